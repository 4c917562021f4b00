"""Fast neural style (Johnson et al., as in pytorch/examples ``fast_neural_style``).

The network is the image transformation net of the pytorch/examples project,
with the same parameter names so its released checkpoints (candy, mosaic,
rain_princess, udnie) load strictly: three reflection-padded convolutions down
(9×9, then two 3×3 with stride 2), five residual blocks, two nearest-neighbour
×2 upsampling convolutions and a 9×9 convolution out, with affine instance
norm after every convolution but the last. It maps 0..255 RGB to 0..255 RGB.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from henshin.errors import InputNotFoundError, ModelError, OptionError
from henshin.filters.base import Filter, check_range, register
from henshin.filters.networks import pad_to_multiple, placement, runtime_for_shape
from henshin.models.checkpoints import load_checkpoint, load_state_strict
from henshin.runtimes import build
from henshin.types import FaceContext, FilterSpec

MODELS = ("candy", "mosaic", "rain-princess", "udnie")

# Checkpoints saved by old torch versions carry instance-norm running statistics
# that the network does not use; the official loader drops them too.
_STALE_KEY = re.compile(r"in\d+\.running_(mean|var)$")


def _torch() -> Any:
    try:
        import torch
    except ImportError:
        raise ModelError("the fns filter needs torch; install it with: pip install 'henshin[torch]'.") from None
    return torch


def transformer_net() -> Any:
    """A TransformerNet with the official layout and fresh (untrained) weights."""
    torch = _torch()
    nn, F = torch.nn, torch.nn.functional

    class Conv(nn.Module):
        """Reflection pad by k//2, then a convolution (keys: ``conv2d.*``)."""

        def __init__(self, cin: int, cout: int, k: int, stride: int = 1, upsample: int = 1) -> None:
            super().__init__()
            self.pad, self.upsample = k // 2, upsample
            self.conv2d = nn.Conv2d(cin, cout, k, stride)

        def forward(self, x: Any) -> Any:
            if self.upsample > 1:
                x = F.interpolate(x, scale_factor=self.upsample, mode="nearest")
            return self.conv2d(F.pad(x, (self.pad,) * 4, mode="reflect"))

    class Residual(nn.Module):
        def __init__(self, channels: int) -> None:
            super().__init__()
            self.conv1, self.in1 = Conv(channels, channels, 3), nn.InstanceNorm2d(channels, affine=True)
            self.conv2, self.in2 = Conv(channels, channels, 3), nn.InstanceNorm2d(channels, affine=True)

        def forward(self, x: Any) -> Any:
            return x + self.in2(self.conv2(F.relu(self.in1(self.conv1(x)))))

    class TransformerNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv1, self.in1 = Conv(3, 32, 9), nn.InstanceNorm2d(32, affine=True)
            self.conv2, self.in2 = Conv(32, 64, 3, 2), nn.InstanceNorm2d(64, affine=True)
            self.conv3, self.in3 = Conv(64, 128, 3, 2), nn.InstanceNorm2d(128, affine=True)
            for i in range(1, 6):
                setattr(self, f"res{i}", Residual(128))
            self.deconv1, self.in4 = Conv(128, 64, 3, upsample=2), nn.InstanceNorm2d(64, affine=True)
            self.deconv2, self.in5 = Conv(64, 32, 3, upsample=2), nn.InstanceNorm2d(32, affine=True)
            self.deconv3 = Conv(32, 3, 9)

        def forward(self, x: Any) -> Any:
            y = F.relu(self.in1(self.conv1(x)))
            y = F.relu(self.in2(self.conv2(y)))
            y = F.relu(self.in3(self.conv3(y)))
            for i in range(1, 6):
                y = getattr(self, f"res{i}")(y)
            y = F.relu(self.in4(self.deconv1(y)))
            y = F.relu(self.in5(self.deconv2(y)))
            return self.deconv3(y)

    return TransformerNet()


def load_transformer(path: Path) -> Any:
    """A TransformerNet with the weights of a fast-neural-style checkpoint, loaded strictly.

    The file is read weights-only (no code from it runs); a file that is not a
    fast-neural-style checkpoint raises a ModelError naming what does not fit.
    """
    torch = _torch()
    path = Path(path)
    state = load_checkpoint(path)
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelError(f"{path} is not a fast-neural-style checkpoint: expected a state dict of tensors.")
    return load_state_strict(transformer_net(), checkpoint_filter_fn(state), "fast-neural-style", path).eval()


def checkpoint_filter_fn(state: dict[str, Any]) -> dict[str, Any]:
    """The official release's keys as this network's: stale instance-norm statistics dropped."""
    return {k: v for k, v in state.items() if not _STALE_KEY.search(k)}


@dataclass(frozen=True)
class FnsParams:
    """model: candy, mosaic, rain-princess or udnie (from `henshin models`);
    weights: a checkpoint path instead; strength: 0 keeps the input, 1 is the
    full style; scope: aligned faces, the whole frame, or the background (the
    frame outside the people); size: face crop side;
    temporal: 0..1, how much of the previous output, warped by the input's
    optical flow, is blended into each output (0: off)."""

    model: str = "candy"
    weights: str = ""
    strength: float = 1.0
    scope: Literal["face", "frame", "background"] = "face"
    size: int = 256
    temporal: float = 0.0

    def __post_init__(self) -> None:
        if self.weights and not Path(self.weights).expanduser().is_file():
            raise InputNotFoundError(f"weights file {self.weights} does not exist; check the path given with "
                                     "--param weights=.")
        if not self.weights and self.model not in MODELS:
            raise OptionError(f"parameter model expects one of {', '.join(MODELS)}, got {self.model!r}.")
        check_range("strength", self.strength, 0.0, 1.0)
        check_range("size", self.size, 64, 1024)
        check_range("temporal", self.temporal, 0.0, 1.0)
        if self.size % 4:
            raise OptionError(f"parameter size expects a multiple of 4, got {self.size}.")


@register
class FnsFilter(Filter):
    """Fast neural style (pytorch/examples checkpoints: candy, mosaic, rain-princess, udnie)."""

    name = "fns"
    Params = FnsParams

    def __init__(self, params: FnsParams, runtime: Any = None, weights: Any = None) -> None:
        super().__init__(params, runtime, weights)
        self._load()

    @classmethod
    def required_models(cls, params: FnsParams) -> tuple[str, ...]:
        return () if params.weights else (f"fns-{params.model}",)

    def _load(self) -> None:
        p = self.params
        path = Path(p.weights).expanduser() if p.weights else self.weights_file(f"fns-{p.model}")
        self.net = load_transformer(path)
        self.key = f"fns-{path.stem}" if p.weights else f"fns-{p.model}"
        self._runtimes: dict[tuple[int, ...], Any] = {}
        self._array, self._device = placement(self.runtime, has_torch_module=True)

    @property
    def spec(self) -> FilterSpec:
        # The network maps 0..255 RGB to 0..255 RGB: crops are cut straight into that range.
        consumes = "crops" if self.params.scope == "face" else "frame"
        mask = "background" if self.params.scope == "background" else "face"
        return FilterSpec(consumes=consumes, size=self.params.size, value_range=(0.0, 255.0), array=self._array,
                          device=self._device, devices=("cpu", "cuda"), mask=mask,
                          temporal_blend=self.params.temporal)

    def set_params(self, **changes: str) -> None:
        old = (self.params.model, self.params.weights)
        super().set_params(**changes)
        if (self.params.model, self.params.weights) != old:
            self._load()

    @property
    def opacity(self) -> float:
        return self.params.strength if self.params.scope == "face" else 1.0

    def runtime_for(self, h: int, w: int) -> Any:
        """The compiled network for (3, h, w) inputs, built on first use (eager torch serves every size)."""
        return runtime_for_shape(self._runtimes, (3, h, w), lambda: build(
            self.runtime, self.key, [("image", (3, h, w))], module=self.net))

    def process(self, batch: Any, faces: Sequence[FaceContext]) -> Any:
        padded, h, w = pad_to_multiple(batch, 4)
        out = self.runtime_for(*padded.shape[-2:])(padded)[:, :, :h, :w]
        if self.params.scope != "face" and self.params.strength < 1.0:
            out = batch + (out - batch) * self.params.strength
        return out.clamp(0.0, 255.0) if hasattr(out, "clamp") else np.clip(out, 0.0, 255.0)
