"""Checkpoints in the official layouts with seeded random weights, and a reference StyleGAN2.

The key names, shapes and top-level structures are written out here from the official code
(rosinality/stylegan2-pytorch ``model.py`` and ``convert_weight.py``, encoder4editing
``models/psp.py`` and ``models/encoders``, GANsNRoses ``model.py`` and ``train.py``), not
taken from henshin's modules, so a naming slip on either side shows up as a refused load.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Mapping

import torch
import torch.nn.functional as F
from torch import Tensor

BLUR = torch.tensor([1.0, 3.0, 3.0, 1.0])
KERNEL = (BLUR[None] * BLUR[:, None]) / 64  # outer([1,3,3,1]) / 64


def rosinality_channels(multiplier: int) -> dict[int, int]:
    """rosinality's ``Generator.channels`` table."""
    return {4: 512, 8: 512, 16: 512, 32: 512, 64: 256 * multiplier, 128: 128 * multiplier,
            256: 64 * multiplier, 512: 32 * multiplier, 1024: 16 * multiplier}


class _Random:
    """Seeded weight factory: He-scaled convs, unit equalized weights, small biases."""

    def __init__(self, seed: int, share: bool = False) -> None:
        self.g = torch.Generator().manual_seed(seed)
        self.share, self._shared = share, {}

    def randn(self, *shape: int, std: float = 1.0, mean: float = 0.0) -> Tensor:
        return torch.randn(*shape, generator=self.g) * std + mean

    def weight(self, *shape: int, std: float = 1.0) -> Tensor:
        """A large weight; with ``share`` one random tensor per shape, stored once by torch.save."""
        if not self.share:
            return self.randn(*shape, std=std)
        if shape not in self._shared:
            self._shared[shape] = self.randn(*shape, std=std)
        return self._shared[shape]

    def equal_linear(self, state: dict, prefix: str, out_dim: int, in_dim: int, lr_mul: float = 1.0,
                     bias_mean: float = 0.0) -> None:
        state[f"{prefix}.weight"] = self.weight(out_dim, in_dim) / lr_mul
        state[f"{prefix}.bias"] = self.randn(out_dim, std=0.1, mean=bias_mean)

    def modulated(self, state: dict, prefix: str, cout: int, cin: int, k: int, style_dim: int) -> None:
        state[f"{prefix}.weight"] = self.weight(1, cout, cin, k, k)
        self.equal_linear(state, f"{prefix}.modulation", cin, style_dim, bias_mean=1.0)


# -- rosinality StyleGAN2 ----------------------------------------------------------------------------


def stylegan2_state(size: int = 256, channels: Mapping[int, int] | None = None, n_mlp: int = 8,
                    style_dim: int = 512, seed: int = 0) -> dict[str, Tensor]:
    """``g_ema`` of rosinality's ``Generator(size, style_dim, n_mlp, channel_multiplier)``."""
    ch = dict(channels or rosinality_channels(2))
    r = _Random(seed)
    state: dict[str, Tensor] = {}
    for i in range(1, n_mlp + 1):  # style.0 is PixelNorm
        r.equal_linear(state, f"style.{i}", style_dim, style_dim, lr_mul=0.01)
    state["input.input"] = r.randn(1, ch[4], 4, 4)
    _styled_conv(r, state, "conv1", ch[4], ch[4], style_dim, upsample=False)
    _to_rgb(r, state, "to_rgb1", ch[4], style_dim, upsample=False)
    log_size = int(math.log2(size))
    cin = ch[4]
    for k, res in enumerate(2 ** i for i in range(3, log_size + 1)):
        _styled_conv(r, state, f"convs.{2 * k}", ch[res], cin, style_dim, upsample=True)
        _styled_conv(r, state, f"convs.{2 * k + 1}", ch[res], ch[res], style_dim, upsample=False)
        _to_rgb(r, state, f"to_rgbs.{k}", ch[res], style_dim, upsample=True)
        cin = ch[res]
    for i in range((log_size - 2) * 2 + 1):
        res = 2 ** ((i + 5) // 2)
        state[f"noises.noise_{i}"] = r.randn(1, 1, res, res)
    return state


def _styled_conv(r: _Random, state: dict, prefix: str, cout: int, cin: int, style_dim: int, upsample: bool,
                 noise: bool = True) -> None:
    r.modulated(state, f"{prefix}.conv", cout, cin, 3, style_dim)
    if upsample:
        state[f"{prefix}.conv.blur.kernel"] = KERNEL * 4
    if noise:
        state[f"{prefix}.noise.weight"] = r.randn(1, std=0.1)
    state[f"{prefix}.activate.bias"] = r.randn(cout, std=0.1)


def _to_rgb(r: _Random, state: dict, prefix: str, cin: int, style_dim: int, upsample: bool) -> None:
    if upsample:
        state[f"{prefix}.upsample.kernel"] = KERNEL * 4
    r.modulated(state, f"{prefix}.conv", 3, cin, 1, style_dim)
    state[f"{prefix}.bias"] = r.randn(1, 3, 1, 1, std=0.1)


def reference_mapping(state: Mapping[str, Tensor], z: Tensor) -> Tensor:
    """rosinality's ``Generator.style`` on z, one equation at a time."""
    x = z * torch.rsqrt((z ** 2).mean(1, keepdim=True) + 1e-8)
    i = 1
    while f"style.{i}.weight" in state:
        weight, bias = state[f"style.{i}.weight"], state[f"style.{i}.bias"]
        x = F.leaky_relu(x @ (weight * 0.01 / math.sqrt(weight.shape[1])).T + bias * 0.01, 0.2) * math.sqrt(2)
        i += 1
    return x


def reference_synthesis(state: Mapping[str, Tensor], w_plus: Tensor) -> Tensor:
    """rosinality's ``Generator.forward(input_is_latent=True, randomize_noise=False)``, one sample at a time.

    Per-sample modulated weights as in the paper's eqs. 1-3; the ×2 upsampling of the skip
    image as a transposed depthwise convolution, independent of henshin's upfirdn2d.
    """
    return torch.cat([_reference_one(state, w[None]) for w in w_plus])


def _reference_one(state: Mapping[str, Tensor], w: Tensor) -> Tensor:
    n_rgbs = sum(1 for k in state if k.startswith("to_rgbs.") and k.endswith(".conv.weight"))
    x = _layer(state, "conv1", state["input.input"], w[:, 0], state["noises.noise_0"])
    skip = _modconv(state, "to_rgb1.conv", x, w[:, 1], demodulate=False) + state["to_rgb1.bias"]
    for k in range(n_rgbs):
        i = 1 + 2 * k
        x = _layer(state, f"convs.{2 * k}", x, w[:, i], state[f"noises.noise_{i}"], upsample=True)
        x = _layer(state, f"convs.{2 * k + 1}", x, w[:, i + 1], state[f"noises.noise_{i + 1}"])
        rgb = _modconv(state, f"to_rgbs.{k}.conv", x, w[:, i + 2], demodulate=False) + state[f"to_rgbs.{k}.bias"]
        up = F.conv_transpose2d(skip, (KERNEL * 4)[None, None].repeat(3, 1, 1, 1), stride=2, padding=1, groups=3)
        skip = rgb + up
    return skip


def _layer(state: Mapping[str, Tensor], prefix: str, x: Tensor, w: Tensor, noise: Tensor,
           upsample: bool = False) -> Tensor:
    x = _modconv(state, f"{prefix}.conv", x, w, demodulate=True, upsample=upsample)
    x = x + state[f"{prefix}.noise.weight"] * noise + state[f"{prefix}.activate.bias"].view(1, -1, 1, 1)
    return F.leaky_relu(x, 0.2) * math.sqrt(2)


def _modconv(state: Mapping[str, Tensor], prefix: str, x: Tensor, w: Tensor, demodulate: bool,
             upsample: bool = False) -> Tensor:
    weight = state[f"{prefix}.weight"][0]
    mod_w, mod_b = state[f"{prefix}.modulation.weight"], state[f"{prefix}.modulation.bias"]
    s = w @ (mod_w / math.sqrt(mod_w.shape[1])).T + mod_b  # eq. 1's s_i
    weight = weight / math.sqrt(weight[0].numel()) * s[0][None, :, None, None]
    if demodulate:  # eq. 3
        weight = weight * torch.rsqrt((weight ** 2).sum([1, 2, 3]) + 1e-8)[:, None, None, None]
    if not upsample:
        return F.conv2d(x, weight, padding=weight.shape[-1] // 2)
    x = F.conv_transpose2d(x, weight.transpose(0, 1), stride=2)
    blur = (KERNEL * 4)[None, None].repeat(x.shape[1], 1, 1, 1)
    return F.conv2d(F.pad(x, (1, 1, 1, 1)), blur, groups=x.shape[1])


# -- encoder4editing -------------------------------------------------------------------------------


IR_SE50 = ((64, 3), (128, 4), (256, 14), (512, 3))  # helpers.get_blocks(50): (depth, units)


def e4e_encoder_state(n_latent: int = 14, depths: tuple[int, ...] = (64, 128, 256, 512), seed: int = 1,
                      share: bool = False) -> dict[str, Tensor]:
    """``Encoder4Editing(50, 'ir_se', opts)``'s state dict (``depths``: the official widths unless narrowed)."""
    r = _Random(seed, share)
    state: dict[str, Tensor] = {}
    _conv(r, state, "input_layer.0", depths[0], 3, 3)
    _batch_norm(r, state, "input_layer.1", depths[0])
    state["input_layer.2.weight"] = r.randn(depths[0], std=0.02, mean=0.25)
    b, cin = 0, depths[0]
    for depth, (_, units) in zip(depths, IR_SE50, strict=True):
        for u in range(units):
            unit_in = cin if u == 0 else depth
            p = f"body.{b}"
            if unit_in != depth:  # bottleneck_IR_SE: a conv shortcut, else MaxPool2d(1, stride)
                _conv(r, state, f"{p}.shortcut_layer.0", depth, unit_in, 1)
                _batch_norm(r, state, f"{p}.shortcut_layer.1", depth)
            _batch_norm(r, state, f"{p}.res_layer.0", unit_in)
            _conv(r, state, f"{p}.res_layer.1", depth, unit_in, 3)
            state[f"{p}.res_layer.2.weight"] = r.randn(depth, std=0.02, mean=0.25)
            _conv(r, state, f"{p}.res_layer.3", depth, depth, 3)
            _batch_norm(r, state, f"{p}.res_layer.4", depth, scale=0.3)
            _conv(r, state, f"{p}.res_layer.5.fc1", depth // 16, depth, 1)
            _conv(r, state, f"{p}.res_layer.5.fc2", depth, depth // 16, 1)
            b += 1
        cin = depth
    width = depths[-1]
    for i in range(n_latent):
        spatial = 16 if i < 3 else 32 if i < 7 else 64
        for j in range(int(math.log2(spatial))):
            _conv(r, state, f"styles.{i}.convs.{2 * j}", width, width, 3, bias=True)
        r.equal_linear(state, f"styles.{i}.linear", width, width)
    _conv(r, state, "latlayer1", width, depths[2], 1, bias=True)
    _conv(r, state, "latlayer2", width, depths[1], 1, bias=True)
    return state


def _conv(r: _Random, state: dict, prefix: str, cout: int, cin: int, k: int, bias: bool = False) -> None:
    state[f"{prefix}.weight"] = r.weight(cout, cin, k, k, std=math.sqrt(2 / (cin * k * k)))
    if bias:
        state[f"{prefix}.bias"] = r.randn(cout, std=0.01)


def _batch_norm(r: _Random, state: dict, prefix: str, c: int, scale: float = 1.0) -> None:
    state[f"{prefix}.weight"] = r.randn(c, std=0.1 * scale, mean=scale)
    state[f"{prefix}.bias"] = r.randn(c, std=0.1)
    state[f"{prefix}.running_mean"] = r.randn(c, std=0.1)
    state[f"{prefix}.running_var"] = 0.5 + torch.rand(c, generator=r.g)
    state[f"{prefix}.num_batches_tracked"] = torch.tensor(1000)


def e4e_checkpoint(encoder: Mapping[str, Tensor], decoder: Mapping[str, Tensor], stylegan_size: int,
                   latent_avg: Tensor | None, namespace: bool = False, **opts: object) -> dict:
    """pSp's saved layout: ``{"state_dict": {"encoder.*", "decoder.*"}, "opts", "latent_avg"}``."""
    import argparse

    options = {"exp_dir": "experiment", "encoder_type": "Encoder4Editing", "stylegan_size": stylegan_size,
               "start_from_latent_avg": True, "lpips_type": "alex", "w_discriminator_lambda": 0.1, **opts}
    ckpt = {"state_dict": {**{f"encoder.{k}": v for k, v in encoder.items()},
                           **{f"decoder.{k}": v for k, v in decoder.items()}},
            "opts": argparse.Namespace(**options) if namespace else options}
    if latent_avg is not None:
        ckpt["latent_avg"] = latent_avg
    return ckpt


# -- GANs N' Roses ------------------------------------------------------------------------------------


GNR_CHANNELS = {4: 512, 8: 512, 16: 512, 32: 512, 64: 256, 128: 128, 256: 64}  # model.py's ``channels``


def gnr_generator_state(channels: Mapping[int, int] = GNR_CHANNELS, size: int = 256, num_down: int = 4,
                        latent_dim: int = 8, n_mlp: int = 5, n_res: int = 1, style_dim: int = 512,
                        seed: int = 0) -> dict[str, Tensor]:
    """GANsNRoses ``Generator(size, num_down, latent_dim, n_mlp, n_res=n_res)``'s state dict."""
    r = _Random(seed)
    state: dict[str, Tensor] = {}
    for i in range(n_mlp):  # no PixelNorm: mapping.0 is the first linear layer
        r.equal_linear(state, f"mapping.{i}", style_dim, latent_dim if i == 0 else style_dim, lr_mul=0.01)
    log_size = int(math.log2(size))
    c = channels[size]
    _conv_layer(r, state, "encoder.stem.0", c, 3, 1)
    for i in range(log_size, log_size - num_down, -1):
        _res_block(r, state, f"encoder.stem.{log_size - i + 1}", c, channels[2 ** (i - 1)], downsample=True)
        c = channels[2 ** (i - 1)]
    for j in range(n_res):
        _res_block(r, state, f"encoder.stem.{num_down + 1 + j}", c, c, downsample=False)
    _conv_layer(r, state, "encoder.content.0", c, c, 1)
    _conv_layer(r, state, "encoder.content.1", c, c, 1)
    k = 0
    for i in range(log_size - num_down, 2, -1):
        _conv_layer(r, state, f"encoder.style.{k}", channels[2 ** (i - 1)], c, 3, downsample=True)
        c, k = channels[2 ** (i - 1)], k + 1
    r.equal_linear(state, f"encoder.style.{k + 1}", channels[4], channels[4] * 16)  # style.{k} is nn.Flatten
    r.equal_linear(state, f"encoder.style.{k + 2}", latent_dim, channels[4])
    c = channels[2 ** (log_size - num_down)]
    for j in range(n_res):
        _styled_conv(r, state, f"adain_bottleneck.{j}.conv1", c, c, style_dim, upsample=False, noise=False)
        _styled_conv(r, state, f"adain_bottleneck.{j}.conv2", c, c, style_dim, upsample=False, noise=False)
    _styled_conv(r, state, "conv1", c, c, style_dim, upsample=False, noise=False)
    _to_rgb(r, state, "to_rgb1", c, style_dim, upsample=False)
    for k, i in enumerate(range(log_size - num_down + 1, log_size + 1)):
        out = channels[2 ** i]
        _styled_conv(r, state, f"convs.{2 * k}", out, c, style_dim, upsample=True, noise=False)
        _styled_conv(r, state, f"convs.{2 * k + 1}", out, out, style_dim, upsample=False, noise=False)
        _to_rgb(r, state, f"to_rgbs.{k}", out, style_dim, upsample=True)
        c = out
    return state


def _conv_layer(r: _Random, state: dict, prefix: str, cout: int, cin: int, k: int, downsample: bool = False,
                activate: bool = True) -> None:
    """model.py's ``ConvLayer``: [Blur,] EqualConv2d (no bias when activated), FusedLeakyReLU (its bias)."""
    i = 0
    if downsample:
        state[f"{prefix}.0.kernel"] = KERNEL
        i = 1
    state[f"{prefix}.{i}.weight"] = r.weight(cout, cin, k, k)
    if activate:
        state[f"{prefix}.{i + 1}.bias"] = r.randn(cout, std=0.1)


def _res_block(r: _Random, state: dict, prefix: str, cin: int, cout: int, downsample: bool) -> None:
    _conv_layer(r, state, f"{prefix}.conv1", cin, cin, 3)
    _conv_layer(r, state, f"{prefix}.conv2", cout, cin, 3, downsample=downsample)
    if downsample or cin != cout:
        _conv_layer(r, state, f"{prefix}.skip", cout, cin, 1, downsample=downsample, activate=False)


# -- storages saved from a GPU ---------------------------------------------------------------------


_TAG: dict[str, str | None] = {"location": None}


def _tag(storage: object) -> str | None:
    return _TAG["location"]


torch.serialization.register_package(0, _tag, lambda storage, location: None)


@contextlib.contextmanager
def storages_tagged(location: str = "cuda:0") -> Iterator[None]:
    """``torch.save`` inside records every storage at ``location``, as a file saved from that GPU does."""
    _TAG["location"] = location
    try:
        yield
    finally:
        _TAG["location"] = None
