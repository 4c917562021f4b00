"""encoder4editing (Tov et al. 2021, "Designing an Encoder for StyleGAN Image Manipulation"): image → W+.

An IR-SE50 backbone (the ArcFace ResNet of Deng et al. 2019 with squeeze-excitation units,
as e4e's ``models/encoders/helpers.py`` builds it) turns a 256×256 face into features at
64, 32 and 16 px (c1, c2, c3). A feature pyramid adds the coarser map, upsampled, to a
1×1 projection of the finer one. One style block per W+ row reduces its map to a 512-d
vector: row 0 is w0, from c3; every other row i is w0 plus a delta from c3 (i < 3), the
middle map (i < 7) or the fine map (e4e sec. 3.2, ``Encoder4Editing.forward``). Where the
training options say ``start_from_latent_avg``, the generator's mean latent is added.

Checkpoints: the pSp framework's ``{"state_dict": {"encoder.*", "decoder.*"}, "opts",
"latent_avg": (n_latent, 512)}``; ``opts`` is a dict (a Namespace in some forks). The
decoder is the StyleGAN2 generator (``henshin.nets.stylegan2.load_generator`` reads it).
Input: RGB (N, 3, 256, 256) in [-1, 1], FFHQ-aligned.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from henshin.errors import ModelError
from henshin.models.checkpoints import (
    indexed_count,
    load_checkpoint,
    load_state_strict,
)
from henshin.nets.layers import EqualLinear
from henshin.nets.stylegan2 import StyleGAN2Generator, generator_from_checkpoint

WHAT = "pSp/e4e encoder"
IR_SE50_DEPTHS = (64, 128, 256, 512)  # the four stages' widths; each stage starts with a stride-2 unit
IR_SE50_UNITS = (3, 4, 14, 3)
SE_REDUCTION = 16
COARSE_END, MIDDLE_END = 3, 7  # e4e's coarse_ind and middle_ind: rows 0-2 coarse, 3-6 middle, 7- fine
MEAN_LATENT_SAMPLES = 10_000  # pSp's fallback when a checkpoint has no latent_avg


class SEModule(nn.Module):
    """Squeeze-and-excitation: channel gates from the pooled map (Hu et al. 2018)."""

    def __init__(self, channels: int, reduction: int = SE_REDUCTION) -> None:
        super().__init__()
        self.fc1 = nn.Conv2d(channels, channels // reduction, 1, bias=False)
        self.fc2 = nn.Conv2d(channels // reduction, channels, 1, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        gate = self.fc2(F.relu(self.fc1(x.mean(dim=(2, 3), keepdim=True))))
        return x * torch.sigmoid(gate)


class BottleneckIRSE(nn.Module):
    """IR-SE unit: BN, 3×3 conv, PReLU, 3×3 conv (stride), BN, SE; plus a shortcut."""

    def __init__(self, in_channel: int, depth: int, stride: int) -> None:
        super().__init__()
        if in_channel == depth:
            self.shortcut_layer: nn.Module = nn.MaxPool2d(1, stride)  # a plain subsampling
        else:
            self.shortcut_layer = nn.Sequential(nn.Conv2d(in_channel, depth, 1, stride, bias=False),
                                                nn.BatchNorm2d(depth))
        self.res_layer = nn.Sequential(
            nn.BatchNorm2d(in_channel), nn.Conv2d(in_channel, depth, 3, 1, 1, bias=False), nn.PReLU(depth),
            nn.Conv2d(depth, depth, 3, stride, 1, bias=False), nn.BatchNorm2d(depth), SEModule(depth))

    def forward(self, x: Tensor) -> Tensor:
        return self.res_layer(x) + self.shortcut_layer(x)


class GradualStyleBlock(nn.Module):
    """Stride-2 3×3 convs with leaky ReLU down to 1×1, then an equalized linear layer: one W+ row."""

    def __init__(self, channels: int, spatial: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for _ in range(int(math.log2(spatial))):
            layers += [nn.Conv2d(channels, channels, 3, stride=2, padding=1), nn.LeakyReLU()]
        self.convs = nn.Sequential(*layers)
        self.linear = EqualLinear(channels, channels)

    def forward(self, x: Tensor) -> Tensor:
        return self.linear(self.convs(x).flatten(1))


def _style_map_size(row: int) -> int:
    """The side of the feature map (for a 256 input) that style block ``row`` reduces to 1×1."""
    return 16 if row < COARSE_END else 32 if row < MIDDLE_END else 64


def _upsample_add(coarse: Tensor, lateral: Tensor) -> Tensor:
    """FPN merge: the coarse map resized bilinearly (corners aligned, as e4e) to the lateral one, added."""
    return F.interpolate(coarse, size=lateral.shape[-2:], mode="bilinear", align_corners=True) + lateral


class E4EEncoder(nn.Module):
    """IR-SE50 + FPN + ``n_latent`` style blocks; ``latent_avg`` (n_latent, 512) added when present.

    ``depths``: the four stages' widths (64, 128, 256, 512 in every released e4e); the last is
    also the style size. A checkpoint's widths are read from its keys.
    """

    def __init__(self, n_latent: int = 18, depths: Sequence[int] = IR_SE50_DEPTHS, with_latent_avg: bool = True) -> None:
        super().__init__()
        self.n_latent, self.style_dim = n_latent, depths[-1]
        self.input_layer = nn.Sequential(nn.Conv2d(3, depths[0], 3, 1, 1, bias=False), nn.BatchNorm2d(depths[0]),
                                         nn.PReLU(depths[0]))
        units, in_channel, self.taps = [], depths[0], []
        for depth, count in zip(depths, IR_SE50_UNITS, strict=True):
            units += [BottleneckIRSE(in_channel if i == 0 else depth, depth, 2 if i == 0 else 1) for i in range(count)]
            in_channel = depth
            self.taps.append(len(units) - 1)  # 2, 6, 20, 23: the last unit of each stage
        self.body = nn.Sequential(*units)
        self.styles = nn.ModuleList(GradualStyleBlock(self.style_dim, _style_map_size(i)) for i in range(n_latent))
        self.latlayer1 = nn.Conv2d(depths[2], self.style_dim, 1)
        self.latlayer2 = nn.Conv2d(depths[1], self.style_dim, 1)
        self.latent_avg: Tensor | None
        if with_latent_avg:
            self.register_buffer("latent_avg", torch.zeros(n_latent, self.style_dim))
        else:
            self.latent_avg = None

    def forward(self, x: Tensor) -> Tensor:
        """RGB (N, 3, 256, 256) in [-1, 1] → W+ (N, n_latent, 512)."""
        c1, c2, c3 = self._features(x)
        w0 = self.styles[0](c3)
        rows, features = [w0], c3
        for i in range(1, self.n_latent):
            if i == COARSE_END:
                p2 = features = _upsample_add(c3, self.latlayer1(c2))
            elif i == MIDDLE_END:
                features = _upsample_add(p2, self.latlayer2(c1))
            rows.append(w0 + self.styles[i](features))
        w = torch.stack(rows, dim=1)
        return w + self.latent_avg if self.latent_avg is not None else w

    def _features(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """c1, c2, c3: the ends of stages 2, 3 and 4 (64, 32 and 16 px for a 256 input)."""
        x = self.input_layer(x)
        taps = []
        for i, unit in enumerate(self.body):
            x = unit(x)
            if i in self.taps[1:]:
                taps.append(x)
        return taps[0], taps[1], taps[2]


# -- official checkpoints ------------------------------------------------------------------------


def training_options(ckpt: Any, path: Path | str) -> dict[str, Any]:
    """The checkpoint's ``opts`` as a dict (pSp stores a dict, forks an argparse.Namespace)."""
    if not isinstance(ckpt, Mapping) or not isinstance(ckpt.get("state_dict"), Mapping):
        top = ", ".join(map(str, list(ckpt)[:5])) if isinstance(ckpt, Mapping) else type(ckpt).__name__
        raise ModelError(f"{path} is not an e4e checkpoint: expected {{\"state_dict\", \"opts\", \"latent_avg\"}}, "
                         f"got {top}.")
    opts = ckpt.get("opts")
    if opts is not None and not isinstance(opts, Mapping):
        opts = vars(opts) if hasattr(opts, "__dict__") else None
    if opts is None:
        raise ModelError(f"{path} is not an e4e checkpoint: it has no training options (opts).")
    return dict(opts)


def encoder_state(ckpt: Any, path: Path | str) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """The encoder's state dict (``encoder.`` keys, plus ``latent_avg`` where used) and the options.

    The number of style blocks comes from the ``encoder.styles.N`` keys and must agree with
    ``opts["stylegan_size"]`` (n_latent = 2·log2(size) − 2).
    """
    opts = training_options(ckpt, path)
    if opts.get("encoder_type", "Encoder4Editing") != "Encoder4Editing":
        raise ModelError(f"{path} holds a {opts['encoder_type']} encoder; henshin reads e4e (Encoder4Editing) "
                         "checkpoints.")
    state = {k.removeprefix("encoder."): v for k, v in ckpt["state_dict"].items() if k.startswith("encoder.")}
    n_latent = indexed_count(state, r"styles\.(\d+)\..+")
    size = int(opts.get("stylegan_size", 1024))
    if n_latent != 2 * int(math.log2(size)) - 2:
        raise ModelError(f"{path} is not a consistent e4e checkpoint: it has {n_latent} style blocks "
                         f"(encoder.styles.N) but opts stylegan_size {size} needs {2 * int(math.log2(size)) - 2}.")
    if opts.get("start_from_latent_avg", False):
        state["latent_avg"] = _latent_avg(ckpt, n_latent, _depths(state, path)[-1], path)
    return state, opts


def _latent_avg(ckpt: Mapping[str, Any], n_latent: int, dim: int, path: Path | str) -> Tensor:
    """The checkpoint's mean latent as (n_latent, 512); pSp's fallback (the decoder's mean w) if absent."""
    avg = ckpt.get("latent_avg")
    if avg is None:
        avg = generator_from_checkpoint(ckpt, path).mean_latent(MEAN_LATENT_SAMPLES)
    if not isinstance(avg, Tensor) or avg.shape[-1] != dim or avg.dim() > 2 \
            or (avg.dim() == 2 and avg.shape[0] not in (1, n_latent)):
        shape = tuple(avg.shape) if isinstance(avg, Tensor) else type(avg).__name__
        raise ModelError(f"{path} has latent_avg {shape}; expected ({n_latent}, {dim}) or ({dim},).")
    return avg.detach().float().cpu().reshape(-1, dim).expand(n_latent, -1).clone()


def _depths(state: Mapping[str, Tensor], path: Path | str) -> tuple[int, ...]:
    """The stages' widths, from the first unit of each stage."""
    firsts = [sum(IR_SE50_UNITS[:i]) for i in range(len(IR_SE50_UNITS))]
    keys = [f"body.{i}.res_layer.1.weight" for i in firsts]
    missing = [k for k in keys if not isinstance(state.get(k), Tensor)]
    if missing:
        raise ModelError(f"{path} is not a {WHAT} checkpoint: missing encoder.{missing[0]}.")
    return tuple(int(state[k].shape[0]) for k in keys)


def encoder_from_checkpoint(ckpt: Any, path: Path | str) -> E4EEncoder:
    """Build the encoder a loaded e4e checkpoint describes and load it strictly (eval mode, CPU, fp32)."""
    state, opts = encoder_state(ckpt, path)
    n_latent = indexed_count(state, r"styles\.(\d+)\..+")
    depths = _depths(state, path)
    net = E4EEncoder(n_latent, depths, with_latent_avg="latent_avg" in state)
    load_state_strict(net, {k: v.float() if v.is_floating_point() else v for k, v in state.items()}, WHAT, path)
    return net.eval()


def load_encoder(path: Path | str) -> E4EEncoder:
    """The e4e encoder of an encoder4editing checkpoint, loaded strictly (weights only, eval, CPU)."""
    return encoder_from_checkpoint(load_checkpoint(Path(path)), path)


def load_e4e(path: Path | str) -> tuple[E4EEncoder, StyleGAN2Generator]:
    """Encoder and decoder of one e4e checkpoint, both loaded strictly (the registry's check)."""
    ckpt = load_checkpoint(Path(path))
    return encoder_from_checkpoint(ckpt, path), generator_from_checkpoint(ckpt, path)
