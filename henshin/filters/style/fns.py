"""The fast-neural-style filter: the pytorch/examples checkpoints (candy, mosaic,
rain-princess, udnie) on face crops, the whole frame or the background. The
network is ``henshin.nets.fns``."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from henshin.errors import InputNotFoundError, OptionError
from henshin.filters.base import Filter, check_range, register
from henshin.filters.networks import pad_to_multiple, placement, runtime_for_shape
from henshin.nets.fns import load_transformer
from henshin.runtimes import build
from henshin.types import FaceContext, FilterSpec

MODELS = ("candy", "mosaic", "rain-princess", "udnie")


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
