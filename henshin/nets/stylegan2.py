"""StyleGAN2 generator (Karras et al. 2020) from rosinality-format checkpoints, or from an e4e file.

The mapping network (PixelNorm, then ``n_mlp`` equalized linear layers with lr_mul 0.01)
takes z to w; the synthesis network starts from a learned 4×4 constant and doubles the
resolution ``log2(size) − 2`` times, each step an upsampling modulated conv, a modulated
conv and a ToRGB whose image is added to the upsampled one before it (the skip
architecture of config-f). W+ holds ``n_latent = 2·log2(size) − 2`` rows: row 0 drives the
first conv, rows 1+2k and 2+2k the two convs at resolution 8·2^k, row 3+2k its ToRGB
(so an odd row is shared by a ToRGB and the next conv), as in rosinality's ``Generator``.

Checkpoints: rosinality's ``convert_weight.py`` writes ``{"g_ema": state dict, "latent_avg":
(512,)}`` (training files add ``g``, ``d`` and optimizers, ignored here); encoder4editing's
files hold the same generator as ``state_dict["decoder.*"]`` and ``latent_avg`` as
(n_latent, 512). Size, ``n_mlp``, style size and the channels at each resolution (so any
channel multiplier) are read from the keys. ``noises.noise_i`` are the fixed noise inputs
(``randomize_noise=False``); synthesis always uses them, so the output is deterministic, and
an ONNX export carries them as constants.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from henshin.errors import ModelError
from henshin.models.checkpoints import (
    indexed_count,
    load_checkpoint,
    load_state_strict,
)
from henshin.nets.layers import ConstantInput, EqualLinear, PixelNorm, StyledConv, ToRGB

WHAT = "StyleGAN2 generator"
MAPPING_LR_MUL = 0.01  # rosinality's lr_mlp, StyleGAN's mapping learning-rate multiplier


def rosinality_channels(channel_multiplier: int = 2) -> dict[int, int]:
    """Channels per resolution of rosinality's ``Generator`` (config-f: multiplier 2)."""
    wide = {4: 512, 8: 512, 16: 512, 32: 512}
    return wide | {2 ** i: 2 ** (14 - i) * channel_multiplier for i in range(6, 11)}


class StyleGAN2Generator(nn.Module):
    """Mapping network ``style`` and synthesis network, with rosinality's module names."""

    def __init__(self, size: int = 1024, style_dim: int = 512, n_mlp: int = 8,
                 channels: Mapping[int, int] | None = None) -> None:
        super().__init__()
        channels = dict(channels or rosinality_channels())
        self.size, self.style_dim, self.n_mlp = size, style_dim, n_mlp
        self.log_size = int(math.log2(size))
        self.n_latent = 2 * self.log_size - 2
        self.num_layers = 2 * (self.log_size - 2) + 1
        self.latent_avg: Tensor | None = None  # the checkpoint's mean w, when it has one
        self.style = nn.Sequential(PixelNorm(), *[
            EqualLinear(style_dim, style_dim, lr_mul=MAPPING_LR_MUL, activation=True) for _ in range(n_mlp)])
        self.input = ConstantInput(channels[4])
        self.conv1 = StyledConv(channels[4], channels[4], 3, style_dim)
        self.to_rgb1 = ToRGB(channels[4], style_dim, upsample=False)
        self.convs, self.to_rgbs = nn.ModuleList(), nn.ModuleList()
        in_channel = channels[4]
        for res in (2 ** i for i in range(3, self.log_size + 1)):
            self.convs.append(StyledConv(in_channel, channels[res], 3, style_dim, upsample=True))
            self.convs.append(StyledConv(channels[res], channels[res], 3, style_dim))
            self.to_rgbs.append(ToRGB(channels[res], style_dim))
            in_channel = channels[res]
        self.noises = nn.Module()
        for i in range(self.num_layers):
            res = 2 ** ((i + 5) // 2)  # 4, 8, 8, 16, 16, ...
            self.noises.register_buffer(f"noise_{i}", torch.randn(1, 1, res, res))

    def mapping(self, z: Tensor) -> Tensor:
        """z (N, style_dim) → w (N, style_dim)."""
        return self.style(z)

    def synthesize(self, w_plus: Tensor, size: int | None = None, offsets: Mapping[int, Tensor] | None = None,
                   record: dict[int, Tensor] | None = None) -> Tensor:
        """W+ (N, n_latent, style_dim) → raw RGB (N, 3, size, size), not clamped, with the fixed noise.

        ``size`` below the generator's stops synthesis at that resolution and returns the skip
        image so far (the sum of the coarser ToRGB outputs): a cheaper, softer picture.
        ``offsets``: per resolution, a (C, R, R) feature offset added to the feature map that
        resolution's ToRGB and next block read (channel-local edits, ATMGAN); ``record``: a dict
        that receives those feature maps (N, C, R, R) by resolution.
        """
        noise = [getattr(self.noises, f"noise_{i}") for i in range(self.num_layers)]
        x = self.conv1(self.input(w_plus), w_plus[:, 0], noise[0])
        skip = self.to_rgb1(x, w_plus[:, 1])
        steps = len(self.to_rgbs) if size is None else int(math.log2(size)) - 2
        for k, to_rgb in enumerate(self.to_rgbs[:steps]):
            i, res = 1 + 2 * k, 8 << k
            x = self.convs[2 * k](x, w_plus[:, i], noise[i])
            x = self.convs[2 * k + 1](x, w_plus[:, i + 1], noise[i + 1])
            if offsets is not None and res in offsets:
                x = x + offsets[res].to(x)
            if record is not None:
                record[res] = x
            skip = to_rgb(x, w_plus[:, i + 2], skip)
        return skip

    def forward(self, w_plus: Tensor) -> Tensor:
        return self.synthesize(w_plus)

    @torch.no_grad()
    def mean_latent(self, n: int = 4096, seed: int = 0) -> Tensor:
        """The mean of ``mapping(z)`` over ``n`` seeded normal z: (1, style_dim)."""
        z = torch.randn(n, self.style_dim, generator=torch.Generator().manual_seed(seed))
        like = self.input.input
        return self.mapping(z.to(like.device, like.dtype)).mean(0, keepdim=True)


# -- official checkpoints ------------------------------------------------------------------------


def generator_state(ckpt: Any, path: Path | str) -> tuple[dict[str, Tensor], Tensor | None]:
    """The generator's state dict and mean w (or None) from a rosinality or e4e checkpoint.

    rosinality: ``ckpt["g_ema"]`` and ``ckpt["latent_avg"]`` (512,). e4e: the
    ``decoder.`` keys of ``ckpt["state_dict"]`` and row 0 of its (n_latent, 512) ``latent_avg``.
    """
    if isinstance(ckpt, Mapping) and isinstance(ckpt.get("g_ema"), Mapping):
        state = dict(ckpt["g_ema"])
    elif isinstance(ckpt, Mapping) and isinstance(ckpt.get("state_dict"), Mapping):
        state = {k.removeprefix("decoder."): v for k, v in ckpt["state_dict"].items() if k.startswith("decoder.")}
        if not state:
            raise ModelError(f"{path} has a state_dict but no decoder.* keys; expected an e4e checkpoint "
                             "or a rosinality StyleGAN2 checkpoint ({\"g_ema\", \"latent_avg\"}).")
    else:
        top = ", ".join(map(str, list(ckpt)[:5])) if isinstance(ckpt, Mapping) else type(ckpt).__name__
        raise ModelError(f"{path} is not a {WHAT} checkpoint: expected rosinality's {{\"g_ema\", \"latent_avg\"}} "
                         f"or an e4e file's state_dict with decoder.* keys, got {top}.")
    return state, _mean_w(ckpt.get("latent_avg"), path)


def _mean_w(latent_avg: Any, path: Path | str) -> Tensor | None:
    if latent_avg is None:
        return None
    if not isinstance(latent_avg, Tensor) or latent_avg.dim() not in (1, 2):
        raise ModelError(f"{path} has a latent_avg that is not a (512,) or (n_latent, 512) tensor.")
    return (latent_avg if latent_avg.dim() == 1 else latent_avg[0]).detach().float().cpu().clone()


def generator_config(state: Mapping[str, Tensor], path: Path | str) -> dict[str, Any]:
    """Size, style size, mapping depth and channels per resolution, read from a state dict's keys."""
    n_mlp = max(indexed_count(state, r"style\.(\d+)\..+") - 1, 0)  # style.0 is the PixelNorm
    n_rgbs = indexed_count(state, r"to_rgbs\.(\d+)\..+")
    if n_rgbs < 1:
        raise ModelError(f"{path} is not a {WHAT} checkpoint: missing to_rgbs.0.conv.weight.")
    channels = {4: _shape(state, "input.input", path)[1]}
    for k in range(n_rgbs):
        channels[2 ** (k + 3)] = _shape(state, f"to_rgbs.{k}.conv.weight", path)[2]
    style_dim = _shape(state, "conv1.conv.modulation.weight", path)[1]
    return {"size": 2 ** (n_rgbs + 2), "style_dim": style_dim, "n_mlp": n_mlp, "channels": channels}


def _shape(state: Mapping[str, Any], key: str, path: Path | str) -> tuple[int, ...]:
    value = state.get(key)
    if not isinstance(value, Tensor):
        raise ModelError(f"{path} is not a {WHAT} checkpoint: missing {key}.")
    return tuple(value.shape)


def generator_from_checkpoint(ckpt: Any, path: Path | str) -> StyleGAN2Generator:
    """Build the generator a loaded checkpoint describes and load it strictly (eval mode, CPU, fp32)."""
    state, latent_avg = generator_state(ckpt, path)
    config = generator_config(state, path)
    net = StyleGAN2Generator(**config)
    load_state_strict(net, {k: v.float() if v.is_floating_point() else v for k, v in state.items()}, WHAT, path)
    net.latent_avg = latent_avg
    return net.eval()


def load_generator(path: Path | str) -> StyleGAN2Generator:
    """A StyleGAN2 generator from a rosinality checkpoint or an e4e checkpoint's decoder, loaded strictly.

    Weights only (no code from the file runs); a missing, unexpected or mis-shaped key
    raises ModelError naming it.
    """
    return generator_from_checkpoint(load_checkpoint(Path(path)), path)


def load_ffhq_1024(path: Path | str) -> StyleGAN2Generator:
    """The registry's ``stylegan2-ffhq-1024`` check: a 1024-px generator with 18 W+ rows of 512."""
    net = load_generator(path)
    if (net.size, net.style_dim) != (1024, 512):
        raise ModelError(f"{path} holds a {net.size}-px StyleGAN2 generator with {net.style_dim}-d styles; "
                         "stylegan2-ffhq-1024 is the 1024-px FFHQ config-f generator (512-d styles).")
    return net
