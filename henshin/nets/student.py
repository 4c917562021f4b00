"""The student: a small image-to-image U-Net made for ONNX Runtime on two CPU cores.

It learns a slow teacher's face filter from (input crop, teacher output) pairs
(Viazovetskyi et al., ECCV 2020, "StyleGAN2 Distillation for Feed-forward Image
Manipulation": a feed-forward image-to-image network trained on a teacher's pairs).
Built for CPU speed rather than taken from a paper: the input is packed with
pixel-unshuffle (a 256² RGB crop becomes 128² × 12, so no convolution runs at full
resolution), the encoder halves with stride-2 convolutions, residual blocks work at
the lowest resolution, each decoder level comes back up with a convolution and
pixel-shuffle and adds its skip (an add, not a concat: fewer channels downstream),
and the output is pixel-shuffled to full size. There is no per-image normalisation
(a frame's statistics would make a face's colour depend on the crop), channel counts
are multiples of 16 (what the CPU's vector units take whole), and for a teacher that
edits its input (``residual``) the network predicts a correction added to it.

Convention: input and output (N, 3, H, W) float32 in [0, 1], H and W multiples of
``MULTIPLE``; the output is not clamped (the filter clamps).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from henshin.models.checkpoints import load_checkpoint, load_state_strict


@dataclass(frozen=True)
class StudentConfig:
    """A student's shape: channels per level (full/2, /4, /8, ...), residual blocks at the bottom, residual output."""

    channels: tuple[int, ...] = (16, 16, 48, 64)
    blocks: int = 2
    residual: bool = True

    def __post_init__(self) -> None:
        if any(c % 16 for c in self.channels) or len(self.channels) < 2:
            raise ValueError(
                f"student channels are multiples of 16, two levels or more; got {self.channels}."
            )

    @property
    def multiple(self) -> int:
        """What H and W must be multiples of: the unshuffle's 2 times 2 per stride-2 level."""
        return 2 ** len(self.channels)

    def to_json(self) -> dict[str, Any]:
        """The config as plain JSON (what the metadata records)."""
        return {**asdict(self), "channels": list(self.channels)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> StudentConfig:
        """Back from ``to_json``."""
        return cls(
            tuple(int(c) for c in data["channels"]), int(data["blocks"]), bool(data["residual"])
        )


# The three sizes ``--student`` offers; measured with ``python -m bench distill``. ``small`` keeps the
# first stride-2 level at 16 channels: most of a 256² crop's time is spent at 128² and 64², so it runs
# in about 0.8× the time of (16, 32, 48, 64) (≤ 10 ms per crop on two cores with a margin), and its
# 48 channels at 1/8 keep most of that one's capacity (docs/distill.md, "How small was chosen").
SIZES: dict[str, StudentConfig] = {
    "small": StudentConfig((16, 16, 48, 64), blocks=2),
    "medium": StudentConfig((32, 48, 64, 96), blocks=2),
    "large": StudentConfig((32, 64, 96, 128), blocks=3),
}


def conv(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    """3×3 convolution, padding 1."""
    return nn.Conv2d(cin, cout, 3, stride, 1)


class ResBlock(nn.Module):
    """x + conv(relu(conv(x))): two 3×3 convolutions with an identity path."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = conv(channels, channels)
        self.conv2 = conv(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.relu(self.conv1(x)))


class Up(nn.Module):
    """Twice the resolution: a 3×3 convolution to 4× the channels, then pixel-shuffle (no checkerboard of a
    transposed convolution, and ONNX's DepthToSpace is cheap)."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv = conv(cin, cout * 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.pixel_shuffle(self.conv(x), 2)


class Student(nn.Module):
    """The student U-Net (see the module docstring): (N, 3, H, W) in [0, 1] → (N, 3, H, W)."""

    def __init__(self, config: StudentConfig = SIZES["small"]) -> None:
        super().__init__()
        self.config = config
        c = config.channels
        self.stem = conv(12, c[0])
        self.down = nn.ModuleList(conv(c[i], c[i + 1], stride=2) for i in range(len(c) - 1))
        self.blocks = nn.Sequential(*(ResBlock(c[-1]) for _ in range(config.blocks)))
        self.up = nn.ModuleList(Up(c[i + 1], c[i]) for i in reversed(range(len(c) - 1)))
        self.head = conv(c[0], 12)
        if config.residual:  # start as the identity: training then learns only the teacher's change
            nn.init.zeros_(self.head.weight)
            nn.init.zeros_(self.head.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.stem(F.pixel_unshuffle(x, 2)))
        skips = [h]
        for down in self.down:
            h = F.relu(down(h))
            skips.append(h)
        h = self.blocks(skips.pop())
        for up in self.up:
            h = F.relu(up(h) + skips.pop())
        out = F.pixel_shuffle(self.head(h), 2)
        return x + out if self.config.residual else out


def flops(config: StudentConfig, size: int = 256) -> int:
    """Multiply-adds of one ``size``² crop (convolutions only; the rest is negligible)."""
    c, side, total = config.channels, size // 2, 0
    total += side * side * 12 * c[0] * 9  # stem
    for i in range(len(c) - 1):
        side //= 2
        total += side * side * c[i] * c[i + 1] * 9  # down
        total += (
            (side * side) * c[i + 1] * c[i] * 4 * 9
        )  # up (at the lower resolution, 4× the channels out)
    total += config.blocks * 2 * side * side * c[-1] * c[-1] * 9
    total += (size // 2) ** 2 * c[0] * 12 * 9  # head
    return total


# -- weights ----------------------------------------------------------------------------------


def student_state(model: Student) -> dict[str, Any]:
    """What the weights file holds: the state dict (its config travels in the metadata)."""
    return {k: v.detach().cpu() for k, v in model.state_dict().items()}


def load_student(path: Path, config: StudentConfig) -> Student:
    """A student of ``config`` from a weights file (safetensors or weights-only torch), loaded strictly."""
    state = load_checkpoint(Path(path))
    if not isinstance(state, Mapping):
        from henshin.errors import ModelError

        raise ModelError(
            f"{path} is not a student checkpoint: expected a state dict, got {type(state).__name__}."
        )
    return load_state_strict(Student(config), state, "henshin student", path).eval()
