"""The latent filter's two networks: the e4e encoder (crop → W+) and the StyleGAN2 generator (W+ → face).

Both come from one e4e checkpoint (its ``decoder.*`` keys are the generator), or, for tests
and timing, are built with seeded random weights in the released configurations at 256 px:
IR-SE50 e4e with 14 style blocks and rosinality's ``Generator(256, 512, 8,
channel_multiplier=2)``. Each runs through ``henshin.runtimes`` (torch, ONNX Runtime or
TensorRT); the generator once per output size it is asked for.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from henshin.errors import OptionError
from henshin.nets.e4e import E4EEncoder, load_e4e
from henshin.nets.stylegan2 import StyleGAN2Generator, rosinality_channels
from henshin.runtimes import build

log = logging.getLogger("henshin")

ENCODER_SIZE = 256  # e4e's input side (its style blocks reduce 16, 32 and 64 px maps of a 256 input)
RANDOM_SIZE = 256
RANDOM_SEED = 0


class Synthesis(nn.Module):
    """A generator's synthesis network from W+ (N, L, 512) to RGB at ``size`` (early exit below its own)."""

    def __init__(self, generator: StyleGAN2Generator, size: int) -> None:
        super().__init__()
        self.generator, self.size = generator, size

    def forward(self, w_plus: torch.Tensor) -> torch.Tensor:
        return self.generator.synthesize(w_plus, None if self.size == self.generator.size else self.size)


class LocalSynthesis(nn.Module):
    """A synthesis network with a fixed feature offset (C, R, R) added at resolution R (a channel-local edit)."""

    def __init__(self, generator: StyleGAN2Generator, size: int, layer: int, offset: torch.Tensor) -> None:
        super().__init__()
        self.generator, self.size, self.layer = generator, size, layer
        self.register_buffer("offset", offset)

    def forward(self, w_plus: torch.Tensor) -> torch.Tensor:
        stop = None if self.size == self.generator.size else self.size
        return self.generator.synthesize(w_plus, stop, {self.layer: self.offset})


def layer_channels(generator: StyleGAN2Generator, resolution: int) -> int:
    """How many channels the generator's feature map at ``resolution`` has (0 when it has none)."""
    k = resolution.bit_length() - 4  # 8 px is block 0
    if not 0 <= k < len(generator.to_rgbs) or resolution != 8 << k:
        return 0
    return generator.convs[2 * k + 1].activate.bias.numel()


@dataclass
class Decoder:
    """A generator and its runtimes built so far, one per output size."""

    generator: StyleGAN2Generator
    key: str
    runtimes: dict[Any, Any] = field(default_factory=dict)  # by size, or (size, local edit tag)

    def synthesis(self, options: Any, size: int) -> Any:
        """The generator's runtime for output ``size`` (built on first use)."""
        if size not in self.runtimes:
            module = Synthesis(self.generator, size).eval()
            self.runtimes[size] = build(options, f"stylegan2-{self.key}-{size}",
                                        [("w_plus", (self.generator.n_latent, self.generator.style_dim))],
                                        module=module)
        return self.runtimes[size]

    def local_synthesis(self, options: Any, size: int, layer: int, offset: torch.Tensor, tag: str) -> Any:
        """The generator's runtime for output ``size`` with a channel-local edit (built on first use per tag)."""
        key = (size, tag)
        if key not in self.runtimes:
            module = LocalSynthesis(self.generator, size, layer, offset).eval()
            self.runtimes[key] = build(options, f"stylegan2-{self.key}-{size}-local-{tag}",
                                       [("w_plus", (self.generator.n_latent, self.generator.style_dim))],
                                       module=module)
        return self.runtimes[key]


@dataclass
class LatentNets:
    """The encoder with its runtime, and the generator it was trained with (the base decoder)."""

    encoder: E4EEncoder
    decoder: Decoder
    key: str
    encode: Any = None

    @property
    def generator(self) -> StyleGAN2Generator:
        return self.decoder.generator

    @property
    def n_latent(self) -> int:
        return self.generator.n_latent

    @property
    def style_dim(self) -> int:
        return self.generator.style_dim

    def open(self, options: Any) -> None:
        """Build the encoder's runtime (errors show at start)."""
        self.encode = build(options, f"e4e-{self.key}", [("image", (3, ENCODER_SIZE, ENCODER_SIZE))], module=self.encoder)

    def output_size(self, asked: int) -> int:
        """The generator output side for a ``size`` parameter (0: the generator's own); a larger one is refused."""
        if asked > self.generator.size:
            raise OptionError(f"parameter size {asked} is larger than the generator's {self.generator.size} px; "
                              f"use {self.generator.size} or less.")
        return asked or self.generator.size


def load_nets(path: Path) -> LatentNets:
    """Encoder and generator of an e4e checkpoint, loaded strictly."""
    encoder, generator = load_e4e(path)
    key = Path(path).stem
    return LatentNets(encoder.requires_grad_(False), Decoder(generator.requires_grad_(False), key), key)


def random_nets(seed: int = RANDOM_SEED, size: int = RANDOM_SIZE) -> LatentNets:
    """Seeded random networks in the released configurations at ``size`` px; warns that the output means nothing."""
    log.warning("latent filter: random_weights=1 builds seeded random networks; the output is meaningless "
                "(for tests and timing only).")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        generator = StyleGAN2Generator(size, 512, 8, rosinality_channels(2)).eval()
        n_latent = generator.n_latent
        encoder = E4EEncoder(n_latent).eval()
        with torch.no_grad():
            # e4e adds the generator's mean latent; with it the random codes sit where the generator expects them.
            encoder.latent_avg.copy_(generator.mean_latent(512, seed).expand(n_latent, -1))
    key = f"random{seed}-{size}"
    return LatentNets(encoder.requires_grad_(False), Decoder(generator.requires_grad_(False), key), key)
