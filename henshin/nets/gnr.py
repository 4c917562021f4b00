"""GANs N' Roses (Chong & Forsyth 2021): face → anime, with a style code that chooses the look.

The released generator is GANsNRoses ``model.py``'s ``Generator(size=256, num_down=4,
latent_dim=8, n_mlp=5, n_res=1)``, built from StyleGAN2's layers (``henshin.nets.layers``):

- encoder: a 1×1 stem to 64 channels, four downsampling residual blocks (256 → 16 px,
  512 channels), one plain residual block; a content head (two 1×1 convs) gives the
  content code (N, 512, 16, 16), a style head (two stride-2 convs to 4×4, then two
  linear layers) the 8-d style code of the input's own look;
- mapping: 5 equalized linear layers 8 → 512 → … → 512 with fused leaky ReLU and lr_mul
  0.01 (no PixelNorm);
- decoder: one styled residual block at 16 px, a styled conv and a ToRGB, then per
  resolution up to 256 an upsampling styled conv, a styled conv and a ToRGB added to the
  upsampled skip image; every layer is modulated by the same w, and there is no noise.

The checkpoint ``GNR_checkpoint.pt`` holds ``G_A2B_ema`` (face → anime, what inference
runs) and ``G_B2A_ema`` (anime → face), whose style encoder reads the style code of an
anime reference picture; the training file adds the raw generators, discriminators and
optimizers, ignored here. Images: RGB (N, 3, 256, 256) in [-1, 1]; the output is not
clamped (show it as ``clamp(x, -1, 1)``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from henshin.errors import ModelError
from henshin.models.checkpoints import indexed_count, load_checkpoint, load_state_strict
from henshin.nets.layers import ConvLayer, EqualLinear, StyledConv, ToRGB

# model.py's ``channels`` table at the resolutions a 256-px generator uses.
GNR_CHANNELS = {4: 512, 8: 512, 16: 512, 32: 512, 64: 256, 128: 128, 256: 64}
LATENT_DIM = 8  # the style code's size (train.py's --latent_dim)
MAPPING_LR_MUL = 0.01  # Generator(lr_mlp=0.01)
FACE_TO_ANIME, ANIME_TO_FACE = "G_A2B_ema", "G_B2A_ema"


class ResBlock(nn.Module):
    """Two 3×3 ConvLayers (the second downsampling) plus a 1×1 skip, summed and scaled by 1/√2."""

    def __init__(self, in_channel: int, out_channel: int, downsample: bool = True) -> None:
        super().__init__()
        self.conv1 = ConvLayer(in_channel, in_channel, 3)
        self.conv2 = ConvLayer(in_channel, out_channel, 3, downsample=downsample)
        self.skip = None
        if downsample or in_channel != out_channel:
            self.skip = ConvLayer(in_channel, out_channel, 1, downsample=downsample, bias=False, activate=False)

    def forward(self, x: Tensor) -> Tensor:
        skip = x if self.skip is None else self.skip(x)
        return (self.conv2(self.conv1(x)) + skip) / math.sqrt(2)


class StyledResBlock(nn.Module):
    """Two styled 3×3 convs (no noise) with an identity skip, scaled by 1/√2."""

    def __init__(self, channel: int, style_dim: int) -> None:
        super().__init__()
        self.conv1 = StyledConv(channel, channel, 3, style_dim, noise=False)
        self.conv2 = StyledConv(channel, channel, 3, style_dim, noise=False)

    def forward(self, x: Tensor, w: Tensor) -> Tensor:
        return (self.conv2(self.conv1(x, w), w) + x) / math.sqrt(2)


class Encoder(nn.Module):
    """Stem of residual blocks, then a content head and a style head (keys ``stem``, ``content``, ``style``)."""

    def __init__(self, size: int, latent_dim: int, num_down: int, n_res: int, channels: Mapping[int, int]) -> None:
        super().__init__()
        in_channel = channels[size]
        stem: list[nn.Module] = [ConvLayer(3, in_channel, 1)]
        for i in range(num_down):
            stem.append(ResBlock(in_channel, channels[size >> (i + 1)]))
            in_channel = channels[size >> (i + 1)]
        stem += [ResBlock(in_channel, in_channel, downsample=False) for _ in range(n_res)]
        self.stem = nn.Sequential(*stem)
        self.content = nn.Sequential(ConvLayer(in_channel, in_channel, 1), ConvLayer(in_channel, in_channel, 1))
        style: list[nn.Module] = []
        for res in (size >> (num_down + i + 1) for i in range(int(math.log2(size)) - num_down - 2)):
            style.append(ConvLayer(in_channel, channels[res], 3, downsample=True))
            in_channel = channels[res]
        style += [nn.Flatten(), EqualLinear(channels[4] * 16, channels[4], activation=True),
                  EqualLinear(channels[4], latent_dim)]
        self.style = nn.Sequential(*style)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        features = self.stem(x)
        return self.content(features), self.style(features)


class GNRGenerator(nn.Module):
    """GANsNRoses' ``Generator``: ``mapping``, ``encoder``, and the decoder's blocks, with its key names."""

    def __init__(self, size: int = 256, num_down: int = 4, latent_dim: int = LATENT_DIM, n_mlp: int = 5,
                 n_res: int = 1, channels: Mapping[int, int] = GNR_CHANNELS, style_dim: int = 512) -> None:
        super().__init__()
        self.size, self.latent_dim, self.style_dim = size, latent_dim, style_dim
        self.mapping = nn.Sequential(*[
            EqualLinear(latent_dim if i == 0 else style_dim, style_dim, lr_mul=MAPPING_LR_MUL, activation=True)
            for i in range(n_mlp)])
        self.encoder = Encoder(size, latent_dim, num_down, n_res, channels)
        in_size = size >> num_down
        in_channel = channels[in_size]
        self.adain_bottleneck = nn.ModuleList(StyledResBlock(in_channel, style_dim) for _ in range(n_res))
        self.conv1 = StyledConv(in_channel, in_channel, 3, style_dim, noise=False)
        self.to_rgb1 = ToRGB(in_channel, style_dim, upsample=False)
        self.convs, self.to_rgbs = nn.ModuleList(), nn.ModuleList()
        res = in_size * 2
        while res <= size:
            self.convs.append(StyledConv(in_channel, channels[res], 3, style_dim, upsample=True, noise=False))
            self.convs.append(StyledConv(channels[res], channels[res], 3, style_dim, noise=False))
            self.to_rgbs.append(ToRGB(channels[res], style_dim))
            in_channel, res = channels[res], res * 2

    def decode_w(self, content: Tensor, w: Tensor) -> Tensor:
        """Content (N, C, 16, 16) and mapped style w (N, style_dim) → RGB (N, 3, size, size), raw."""
        x = content
        for block in self.adain_bottleneck:
            x = block(x, w)
        x = self.conv1(x, w)
        skip = self.to_rgb1(x, w)
        for k, to_rgb in enumerate(self.to_rgbs):
            x = self.convs[2 * k + 1](self.convs[2 * k](x, w), w)
            skip = to_rgb(x, w, skip)
        return skip


class StyleEncoder(nn.Module):
    """The style path of an encoder (its stem and style head): image → style code."""

    def __init__(self, stem: nn.Module, style: nn.Module) -> None:
        super().__init__()
        self.stem, self.style = stem, style

    def forward(self, x: Tensor) -> Tensor:
        return self.style(self.stem(x))


class GNR(nn.Module):
    """GANs N' Roses at inference: the face → anime generator, and the anime style encoder where known.

    ``model(images, styles)``: faces (N, 3, 256, 256) RGB in [-1, 1] and style codes
    (N, 8) → anime faces (N, 3, 256, 256), raw.
    """

    def __init__(self, generator: GNRGenerator | None = None, anime_style: StyleEncoder | None = None) -> None:
        super().__init__()
        self.generator = generator if generator is not None else GNRGenerator()
        self.anime_style = anime_style

    def forward(self, images: Tensor, styles: Tensor) -> Tensor:
        return self.decode(self.content_of(images), styles)

    def content_of(self, images: Tensor) -> Tensor:
        """Content codes (N, 512, 16, 16) of faces."""
        encoder = self.generator.encoder
        return encoder.content(encoder.stem(images))

    def map_style(self, styles: Tensor) -> Tensor:
        """Style codes (N, 8) → w (N, 512) through the mapping network."""
        return self.generator.mapping(styles)

    def decode(self, content: Tensor, styles: Tensor) -> Tensor:
        """Content codes and style codes (N, 8) → anime faces, raw."""
        return self.decode_w(content, self.map_style(styles))

    def decode_w(self, content: Tensor, w: Tensor) -> Tensor:
        """Content codes and mapped styles w (N, 512) → anime faces, raw (no mapping)."""
        return self.generator.decode_w(content, w)

    def style_of(self, anime_images: Tensor) -> Tensor:
        """Style codes (N, 8) of anime reference pictures, read by G_B2A_ema's style encoder."""
        if self.anime_style is None:
            raise ModelError(f"this GANs N' Roses checkpoint has no {ANIME_TO_FACE}, so it cannot read the style "
                             "of an anime picture; use the full GNR_checkpoint.pt, or a style from style_from_seed.")
        return self.anime_style(anime_images)


class FaceToAnime(nn.Module):
    """What a filter runs per face: ``(faces, w) → anime faces``, the mapping done once per face outside.

    faces (N, 3, size, size) RGB in [-1, 1]; w (N, style_dim) mapped style codes; out raw RGB.
    One module with two batched inputs, so every runtime (ONNX export included) takes it whole.
    """

    def __init__(self, generator: GNRGenerator) -> None:
        super().__init__()
        self.generator = generator

    def forward(self, images: Tensor, w: Tensor) -> Tensor:
        encoder = self.generator.encoder
        return self.generator.decode_w(encoder.content(encoder.stem(images)), w)


def random_gnr(seed: int = 0, anime_style: bool = False) -> GNR:
    """The released configuration with seeded random weights (tests, benchmarks), global RNG untouched.

    Its pictures are meaningless; ``anime_style`` adds a random G_B2A_ema style encoder for ``style_of``.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        generator = GNRGenerator()
        style = None
        if anime_style:
            encoder = GNRGenerator().encoder
            style = StyleEncoder(encoder.stem, encoder.style)
    return GNR(generator, style).eval().requires_grad_(False)


def style_from_seed(seed: int, n: int = 1) -> Tensor:
    """Style codes (n, 8), the same as ``torch.manual_seed(seed); torch.randn(n, 8)``, global RNG untouched."""
    return torch.randn(n, LATENT_DIM, generator=torch.Generator().manual_seed(seed))


# -- official checkpoints ------------------------------------------------------------------------


def generator_config(state: Mapping[str, Tensor], where: str) -> dict[str, Any]:
    """Size, depths and channels per resolution of a GNR generator, read from its state dict's keys."""
    n_blocks = indexed_count(state, r"encoder\.stem\.(\d+)\..+") - 1  # stem.0 is the 1×1 ConvLayer
    num_down = sum(f"encoder.stem.{i}.skip.1.weight" in state for i in range(1, n_blocks + 1))
    n_style_convs = max(indexed_count(state, r"encoder\.style\.(\d+)\..+") - 3, 0)  # then Flatten, 2 linears
    size = 2 ** (n_style_convs + 2 + num_down)
    latent_style = _shape(state, "mapping.0.weight", where)
    channels = {size: _shape(state, "encoder.stem.0.0.weight", where)[0], 4: _shape(
        state, f"encoder.style.{n_style_convs + 2}.weight", where)[1]}
    for i in range(1, num_down + 1):
        channels[size >> i] = _shape(state, f"encoder.stem.{i}.conv2.1.weight", where)[0]
    for k in range(indexed_count(state, r"to_rgbs\.(\d+)\..+")):
        channels[(size >> num_down) << (k + 1)] = _shape(state, f"to_rgbs.{k}.conv.weight", where)[2]
    for j in range(n_style_convs):
        channels[size >> (num_down + j + 1)] = _shape(state, f"encoder.style.{j}.1.weight", where)[0]
    return {"size": size, "num_down": num_down, "latent_dim": latent_style[1], "style_dim": latent_style[0],
            "n_mlp": indexed_count(state, r"mapping\.(\d+)\..+"), "n_res": n_blocks - num_down,
            "channels": channels}


def _shape(state: Mapping[str, Any], key: str, where: str) -> tuple[int, ...]:
    value = state.get(key)
    if not isinstance(value, Tensor):
        raise ModelError(f"{where} checkpoint: missing {key}.")
    return tuple(value.shape)


def generator_from_state(ckpt: Mapping[str, Any], entry: str, path: Path | str) -> GNRGenerator:
    """The generator stored under ``ckpt[entry]``, built from its keys and loaded strictly."""
    what = f"GANs N' Roses {entry}"
    state = ckpt.get(entry)
    if not isinstance(state, Mapping):
        top = ", ".join(map(str, list(ckpt)[:5]))
        raise ModelError(f"{path} has no {entry}; expected GANsNRoses' GNR_checkpoint.pt "
                         f"({{\"{FACE_TO_ANIME}\", \"{ANIME_TO_FACE}\"}}), got {top}.")
    net = GNRGenerator(**generator_config(state, f"{path} is not a {what}"))
    state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
    return load_state_strict(net, state, what, path)


def load_gnr(path: Path | str) -> GNR:
    """GANs N' Roses from ``GNR_checkpoint.pt`` (or the training file), weights only, strict, eval, CPU.

    ``G_A2B_ema`` is required; ``G_B2A_ema``, when present, is loaded strictly too and its
    style encoder kept for ``style_of``. A missing entry, or a missing, unexpected or
    mis-shaped key, raises ModelError naming the entry and the first offending keys.
    """
    ckpt = load_checkpoint(Path(path))
    if not isinstance(ckpt, Mapping):
        raise ModelError(f"{path} is not a GANs N' Roses checkpoint: expected a dict with {FACE_TO_ANIME}.")
    face_to_anime = generator_from_state(ckpt, FACE_TO_ANIME, path)
    anime_style = None
    if ANIME_TO_FACE in ckpt:
        encoder = generator_from_state(ckpt, ANIME_TO_FACE, path).encoder
        anime_style = StyleEncoder(encoder.stem, encoder.style)
    return GNR(face_to_anime, anime_style).eval()
