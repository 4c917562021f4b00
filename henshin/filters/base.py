"""The filter interface, the filter registry and typed ``--param`` parsing.

A filter is batch in, batch out: ``(N, 3, S, S)`` float32 in [-1, 1] →
``(N, 3, S', S')``. It declares whether it works on aligned faces (``face``)
or the whole frame (``frame``) and the crop size it wants. Parameters are a
dataclass per filter, so the command line, presets and live control share one
typed description.

A ``LandmarkFilter`` works at frame resolution instead of on crops: it gets the
frame and each face's smoothed landmarks and returns, per face, a patch of new
pixels with its own mask, which the compositor blends in (warps and region
tints, which a crop's resampling would blur and which need no network).
"""

from __future__ import annotations

import dataclasses
import importlib
import typing
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np

from henshin.errors import OptionError

FILTERS: dict[str, type[Filter]] = {}
# Modules that register filters when imported; imported on first lookup so
# that `import henshin.filters` stays cheap.
_FILTER_MODULES = ("henshin.filters.style", "henshin.filters.fns", "henshin.filters.warp",
                   "henshin.filters.tint")


class Filter(ABC):
    """A face (or frame) filter over batches of images in [-1, 1]."""

    name: ClassVar[str]
    Params: ClassVar[type]

    def __init__(self, params: Any, runtime: Any = None) -> None:
        # runtime: a henshin.engine.runtimes.RuntimeOptions for filters that run a
        # network (None: the default, ``auto``); weight-free filters ignore it.
        self.params = params
        self.runtime = runtime

    @property
    def scope(self) -> Literal["face", "frame"]:
        """``face``: aligned face crops go in; ``frame``: the whole frame goes in."""
        return getattr(self.params, "scope", "face")

    @property
    def input_size(self) -> int:
        """Side of the square crops the filter wants (face scope)."""
        return int(getattr(self.params, "size", 256))

    @property
    def opacity(self) -> float:
        """How strongly the compositor blends this filter's faces in (0..1).

        Mixing with the original in the frame, not in the crop, keeps strength 0
        an exact identity: the untouched pixels are never resampled.
        """
        return 1.0

    @abstractmethod
    def process(self, batch: np.ndarray, track_ids: Sequence[int]) -> np.ndarray:
        """Filter a batch: (N, 3, H, W) float32 in [-1, 1] → (N, 3, H', W') float32 in [-1, 1].

        ``track_ids`` names the face each image belongs to (-1 for a whole frame),
        so a filter can keep per-face state across frames.
        """

    def set_params(self, **changes: str) -> None:
        """Change parameters by name from strings, validating them as at start."""
        self.params = dataclasses.replace(self.params, **_convert(type(self.params), changes))

    def close(self) -> None:  # noqa: B027 - optional hook, most filters hold nothing
        """Release sessions and buffers."""


@dataclass(slots=True)
class FacePatch:
    """New pixels for one region of the frame and where to use them.

    roi: (x0, y0, x1, y1) in frame pixels; pixels: (y1-y0, x1-x0, 3) uint8 or
    float32 0..255 RGB; mask: (y1-y0, x1-x0) float32 in [0, 1]. Outside the mask
    (mask 0) the frame keeps its exact bytes.
    """

    roi: tuple[int, int, int, int]
    pixels: np.ndarray
    mask: np.ndarray


class LandmarkFilter(Filter):
    """A face filter that works on the frame itself, guided by each face's landmarks.

    The engine tracks and smooths faces as for any face filter (centred window
    offline, One Euro live), then calls ``edit`` instead of ``process``; no crops
    are cut. It needs no network, so ``runtime`` is ignored.
    """

    @abstractmethod
    def edit(self, image: np.ndarray, landmarks: Sequence[np.ndarray], track_ids: Sequence[int]) -> list[FacePatch]:
        """Patches for the faces of one frame.

        image: (H, W, 3) uint8 RGB (read only); landmarks: per face, (478, 3)
        float smoothed landmarks in frame pixels; track_ids: the faces' ids.
        An empty list leaves the frame exactly as it was.
        """

    def process(self, batch: np.ndarray, track_ids: Sequence[int]) -> np.ndarray:
        """No crop path: crops pass through unchanged (the engine calls ``edit``; warm-ups may call this)."""
        return batch


def register(cls: type[Filter]) -> type[Filter]:
    """Class decorator: make a filter available by its ``name``."""
    FILTERS[cls.name] = cls
    return cls


def available_filters() -> dict[str, type[Filter]]:
    """All registered filters, importing the built-in families first."""
    for module in _FILTER_MODULES:
        importlib.import_module(module)
    return FILTERS


def create_filter(name: str, params: Any, runtime: Any = None) -> Filter:
    """Build the filter called ``name`` with already-parsed parameters and runtime options."""
    return filter_class(name)(params, runtime)


def filter_class(name: str) -> type[Filter]:
    """The filter class registered as ``name``, or an error listing the known ones."""
    filters = available_filters()
    if name not in filters:
        raise OptionError(f"unknown filter {name!r}; expected one of: {', '.join(sorted(filters))}.")
    return filters[name]


def parse_params(cls: type, raw: Mapping[str, str]) -> Any:
    """Build the dataclass ``cls`` from string values, with one-sentence errors."""
    return cls(**_convert(cls, raw))


def param_names(cls: type) -> list[str]:
    """The parameter names a params dataclass accepts."""
    return [f.name for f in dataclasses.fields(cls)]


def _convert(cls: type, raw: Mapping[str, str]) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    known = param_names(cls)
    out: dict[str, Any] = {}
    for key, text in raw.items():
        if key not in known:
            raise OptionError(f"unknown parameter {key!r}; expected one of: {', '.join(known)}.")
        out[key] = _parse_value(key, str(text), hints[key])
    return out


def _parse_value(key: str, text: str, kind: Any) -> Any:
    origin = typing.get_origin(kind)
    if origin is Literal:
        choices = typing.get_args(kind)
        if text not in choices:
            raise OptionError(f"parameter {key} expects one of {', '.join(map(str, choices))}, got {text!r}.")
        return text
    try:
        if kind is bool:
            lowered = text.lower()
            if lowered not in ("1", "0", "true", "false", "yes", "no", "on", "off"):
                raise ValueError
            return lowered in ("1", "true", "yes", "on")
        if kind is int:
            return int(text)
        if kind is float:
            return float(text)
    except ValueError:
        name = {bool: "true or false", int: "a whole number", float: "a number"}[kind]
        raise OptionError(f"parameter {key} expects {name}, got {text!r}.") from None
    return text


def check_range(key: str, value: float, low: float, high: float) -> None:
    """Raise a one-sentence OptionError unless low ≤ value ≤ high."""
    if not low <= value <= high:
        raise OptionError(f"parameter {key} expects a value from {low:g} to {high:g}, got {value:g}.")
