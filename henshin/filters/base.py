"""The filter interface (v2), the filter registry and typed ``--param`` parsing.

A filter declares what it consumes in a ``FilterSpec`` (aligned face crops, the
whole frame, or the frame with landmarks; crop size; value range and layout;
NumPy or torch, and on which device) and the engine hands it exactly that. It
may keep state per face: the engine calls ``start_track`` when a face first
reaches the filter and keeps what it returns, passes it back with every batch
item of that face (``FaceContext.state``), and calls ``end_track`` when the face
leaves; a filter whose spec is ``temporal`` also gets its previous output for
the same face. Parameters are a dataclass per filter, so the command line,
presets and live control share one typed description.

A ``LandmarkFilter`` works at frame resolution instead of on crops: it gets the
frame and each face's smoothed landmarks and returns, per face, a patch of new
pixels with its own mask, which the compositor blends in (warps and region
tints, which a crop's resampling would blur and which need no network).
"""

from __future__ import annotations

import contextvars
import dataclasses
import importlib
import typing
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal

from henshin.errors import ModelError, OptionError
from henshin.types import FaceContext, FacePatch, FilterSpec

FILTERS: dict[str, type[Filter]] = {}
# Modules that register filters when imported; imported on first lookup so
# that `import henshin.filters` stays cheap.
# The built-in filters by name, and the module that registers each: a run imports only the
# filters it uses, so one whose optional dependency (torch) is missing costs nothing elsewhere.
BUILTIN: dict[str, str] = {"style": "henshin.filters.style.filter", "fns": "henshin.filters.style.fns",
                           "warp": "henshin.filters.geometry.warp", "tint": "henshin.filters.geometry.tint",
                           "gnr": "henshin.filters.gnr.filter", "latent": "henshin.filters.latent.filter",
                           "transfer": "henshin.filters.transfer.filter", "student": "henshin.filters.student.filter"}
UNAVAILABLE: dict[str, str] = {}  # built-in filters that could not be imported here, and why


class Filter(ABC):
    """A face (or frame) filter: a declared spec, a batch in, a batch out, optional per-face state."""

    name: ClassVar[str]
    Params: ClassVar[type]

    def __init__(self, params: Any, runtime: Any = None, weights: Mapping[str, Path] | None = None) -> None:
        # runtime: henshin.runtimes.RuntimeOptions for filters that run a network (None: ``auto``);
        # weights: the files of the registry models named by ``required_models``, found by the engine.
        self.params = params
        self.runtime = runtime
        self.weights = dict(weights or {})

    @classmethod
    def required_models(cls, params: Any) -> tuple[str, ...]:
        """Registry names of the models these parameters need (the engine finds their files)."""
        return ()

    @property
    def spec(self) -> FilterSpec:
        """What the filter consumes; by default aligned crops of ``size`` in [-1, 1], or the frame at ``scope=frame``."""
        scope = getattr(self.params, "scope", "face")
        return FilterSpec(consumes="frame" if scope == "frame" else "crops", size=int(getattr(self.params, "size", 256)))

    @property
    def label(self) -> str:
        """What this filter does now, in a few words (the live overlay and control answers show it)."""
        return self.name

    @property
    def opacity(self) -> float:
        """How strongly the compositor blends this filter's faces in (0..1).

        Mixing with the original in the frame, not in the crop, keeps strength 0
        an exact identity: the untouched pixels are never resampled.
        """
        return 1.0

    def start_track(self, track_id: int) -> Any:
        """A new face reaches this filter; what is returned is its state, handed back with each of its items."""
        return None

    def end_track(self, track_id: int, state: Any) -> None:  # noqa: B027 - optional hook
        """The face left (or the filter is replaced): release its state."""

    @abstractmethod
    def process(self, batch: Any, faces: Sequence[FaceContext]) -> Any:
        """Filter a batch laid out and ranged as ``spec`` says; the output has the same layout and range.

        ``faces[i]`` describes item ``i`` (its track, state, frame time, crop matrix,
        landmarks and, for a temporal filter, its previous output). The output
        may have another spatial size than the input (the compositor scales it).
        """

    def weights_file(self, model: str) -> Path:
        """The file of registry model ``model`` as the engine found it, or a ModelError saying how to get it."""
        if model not in self.weights:
            raise ModelError(f"model {model} was not given to the {self.name} filter; run "
                             f"`henshin models pull {model}` and build the filter through the engine.")
        return self.weights[model]

    def set_params(self, **changes: str) -> None:
        """Change parameters by name from strings, validating them as at start (per-face state is kept)."""
        self.params = dataclasses.replace(self.params, **_convert(type(self.params), changes))

    @property
    def quality_steps(self) -> int:
        """How many steps below full quality this filter offers the live governor (0: none)."""
        return 0

    def set_quality(self, step: int) -> None:  # noqa: B027 - optional hook
        """Live only: run at ``step`` of ``quality_steps`` (0: full quality); the engine's governor chooses it."""

    def close(self) -> None:  # noqa: B027 - optional hook, most filters hold nothing
        """Release sessions and buffers."""


class LandmarkFilter(Filter):
    """A face filter that works on the frame itself, guided by each face's landmarks.

    The engine tracks and smooths faces as for any face filter (centred window
    offline, One Euro live), then calls ``edit`` instead of ``process``; no crops
    are cut. It needs no network, so ``runtime`` is ignored.
    """

    @property
    def spec(self) -> FilterSpec:
        return FilterSpec(consumes="landmarks")

    @abstractmethod
    def edit(self, image: Any, faces: Sequence[FaceContext]) -> list[FacePatch]:
        """Patches for the faces of one frame.

        image: (H, W, 3) uint8 RGB (read only); faces: per face, its context with
        ``landmarks`` (478, 3) smoothed in frame pixels. An empty list leaves the
        frame exactly as it was.
        """

    def process(self, batch: Any, faces: Sequence[FaceContext]) -> Any:
        """No crop path: a landmark filter edits the frame (``edit``)."""
        raise TypeError(f"the {self.name} filter edits frames by landmarks; call edit(), not process().")


def register(cls: type[Filter]) -> type[Filter]:
    """Class decorator: make a filter available by its ``name``."""
    FILTERS[cls.name] = cls
    return cls


def available_filters() -> dict[str, type[Filter]]:
    """All filters that can run here: the built-in ones (those whose imports fail are left out,
    with the reason in ``UNAVAILABLE``) and any registered by other code."""
    for name in BUILTIN:
        _load(name)
    return FILTERS


def _load(name: str) -> None:
    if name in FILTERS or name not in BUILTIN or name in UNAVAILABLE:
        return
    try:
        importlib.import_module(BUILTIN[name])
    except ImportError as exc:  # an optional dependency of that family (torch) is not installed
        UNAVAILABLE[name] = f"the {name} filter needs {exc.name or 'a package that is missing'}; install it with: " \
                            "pip install 'henshin[torch]'"


def create_filter(name: str, params: Any, runtime: Any = None, weights: Mapping[str, Path] | None = None) -> Filter:
    """Build the filter called ``name`` with already-parsed parameters, runtime options and model files."""
    return filter_class(name)(params, runtime, weights)


def filter_class(name: str) -> type[Filter]:
    """The filter class registered as ``name`` (its module imported on first use), or an error listing the known ones."""
    _load(name)
    if name in FILTERS:
        return FILTERS[name]
    if name in UNAVAILABLE:
        raise OptionError(UNAVAILABLE[name] + ".")
    known = sorted({*BUILTIN, *FILTERS})
    raise OptionError(f"unknown filter {name!r}; expected one of: {', '.join(known)}.")


def parse_params(cls: type, raw: Mapping[str, str]) -> Any:
    """Build the dataclass ``cls`` from string values, with one-sentence errors."""
    return cls(**_convert(cls, raw))


def param_names(cls: type) -> list[str]:
    """The parameter names a params dataclass accepts."""
    return [f.name for f in dataclasses.fields(cls)]


def _convert(cls: type, raw: Mapping[str, str]) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    out: dict[str, Any] = {}
    for key, text in raw.items():
        if key not in fields:
            raise OptionError(f"unknown parameter {key!r}; expected one of: {', '.join(fields)}.")
        # A field may name its own parser (a style by number or name): metadata={"parse": fn}.
        parse = fields[key].metadata.get("parse")
        out[key] = parse(str(text)) if parse else _parse_value(key, str(text), hints[key])
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
    seen = _ranges_seen.get()
    if seen is not None:
        seen[key] = (low, high)
    if not low <= value <= high:
        raise OptionError(f"parameter {key} expects a value from {low:g} to {high:g}, got {value:g}.")


# While ``param_ranges`` builds a default instance, ``check_range`` notes each range it checks here:
# the ranges a params class validates are then the ones the panel's sliders offer, written once.
_ranges_seen: contextvars.ContextVar[dict[str, tuple[float, float]] | None] = contextvars.ContextVar(
    "henshin_ranges_seen", default=None)


def param_ranges(cls: type) -> dict[str, tuple[float, float]]:
    """The (low, high) range of each numeric parameter that ``cls`` checks with ``check_range``, by name.

    Found by building the defaults with the checks noted; a field's ``metadata["range"]`` wins.
    """
    seen: dict[str, tuple[float, float]] = {}
    token = _ranges_seen.set(seen)
    try:
        cls()
    except Exception:  # noqa: BLE001 - defaults that need a file or a model: only what was checked so far
        pass
    finally:
        _ranges_seen.reset(token)
    for f in dataclasses.fields(cls):
        if "range" in f.metadata:
            seen[f.name] = tuple(f.metadata["range"])
    return seen


def describe_params(cls: type, values: Any = None) -> list[dict[str, Any]]:
    """Each parameter of ``cls`` as plain data for a control: name, kind, default, range, choices.

    kind: ``bool``, ``int``, ``float``, ``choice`` (a ``Literal``, or ``metadata["choices"]`` on a
    text field) or ``text``; ``range``: [low, high] where the class checks one; ``choices`` on an
    ``int`` are names for its values from the low end of its range up (a style's names);
    ``value``: from ``values`` when given.
    """
    hints = typing.get_type_hints(cls)
    ranges = param_ranges(cls)
    out = []
    for f in dataclasses.fields(cls):
        kind = hints[f.name]
        literal = typing.get_origin(kind) is Literal
        choices = list(typing.get_args(kind)) if literal else f.metadata.get("choices")
        plain = {bool: "bool", int: "int", float: "float"}.get(kind, "text")
        entry: dict[str, Any] = {
            "name": f.name,
            "kind": "choice" if literal or (choices and plain == "text") else plain,
            "default": None if f.default is dataclasses.MISSING else f.default,
        }
        if choices:
            entry["choices"] = list(choices)
        if f.name in ranges:
            entry["range"] = list(ranges[f.name])
        if values is not None:
            entry["value"] = getattr(values, f.name)
        out.append(entry)
    return out
