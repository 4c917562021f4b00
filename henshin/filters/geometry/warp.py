"""Landmark-driven face warps: bigger eyes, slimmer jaw, smile lift, narrower nose, symmetry.

In the spirit of GeoGAN's landmark-driven flow, but without a network: a preset
says how landmark groups move (in eye distances, in the face's own frame, so a
tilted head is warped along its own axes); the moved landmarks, the features
that do not move and a ring around the face oval (which stays put) become the
controls of a thin-plate-spline flow, applied as one resampling of the face
region. The ring lies ``margin`` eye distances beyond the oval and the flow
falls smoothly to zero at it, so a jaw can move inward over the background
without the frame around the face bending; outside the ring nothing changes.

Presets are files (TOML or JSON; see ``presets/*.toml`` and the README)::

    symmetry = 0.0            # optional: 0..1, mirror-average the features
    [groups.left_eye]
    scale = 1.25              # about the group's centre; or [sx, sy]
    [groups.left_iris]
    scale = 1.25
    about = "left_eye"        # scale about another group's centre
    [groups.lips]
    move = [0.0, -0.05]       # [right, down] in eye distances
"""

from __future__ import annotations

import json
import math
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from henshin.errors import BadInputError, InputNotFoundError, OptionError
from henshin.filters.base import LandmarkFilter, check_range, register
from henshin.kernels import landmarks as lm
from henshin.kernels.flow import grid_step, landmark_flow, warp_by_flow
from henshin.types import FaceContext, FacePatch

PRESET_DIR = Path(__file__).parent / "presets"
BUILTIN_PRESETS = ("big_eyes", "slim_jaw", "smile_lift", "narrow_nose", "symmetrize")

_NOSE = (1, 2, 4, 5, 6, 19, 45, 48, 64, 94, 97, 98, 115, 168, 195, 197, 220, 275, 278, 294, 326, 327, 344, 440)
GROUPS: dict[str, tuple[int, ...]] = {
    "left_eye": lm.LEFT_EYE,
    "right_eye": lm.RIGHT_EYE,
    "eyes": lm.LEFT_EYE + lm.RIGHT_EYE,
    "left_iris": (lm.LEFT_IRIS_CENTER, *lm.LEFT_IRIS),
    "right_iris": (lm.RIGHT_IRIS_CENTER, *lm.RIGHT_IRIS),
    "left_brow": lm.LEFT_BROW,
    "right_brow": lm.RIGHT_BROW,
    "brows": lm.LEFT_BROW + lm.RIGHT_BROW,
    "lips": lm.LIPS_OUTER + lm.LIPS_INNER,
    "inner_mouth": lm.LIPS_INNER,
    "mouth_left": (291, 375, 409, 308, 324, 415),  # the subject's left corner and its neighbours
    "mouth_right": (61, 146, 185, 78, 95, 191),
    "nose": _NOSE,
    "face_oval": lm.FACE_OVAL,
    "jaw": lm.FACE_OVAL[10:27],  # the oval below the cheekbones, angle to angle through the chin
    "chin": (152, 148, 176, 377, 400),
}
# Every feature landmark: what does not move is pinned, so an edit stays local.
FEATURES = tuple(sorted({i for name in ("eyes", "left_iris", "right_iris", "brows", "lips", "nose", "face_oval")
                         for i in GROUPS[name]}))


def _mirror_pairs() -> np.ndarray:
    pairs = list(zip(lm.LEFT_EYE, lm.RIGHT_EYE, strict=True)) + list(zip(lm.LEFT_BROW, lm.RIGHT_BROW, strict=True))
    # mediapipe's iris points run (centre, image-right, top, image-left, bottom) in both eyes
    pairs += [(473, 468), (474, 471), (475, 470), (476, 469), (477, 472)]
    for loop in (lm.LIPS_OUTER, lm.LIPS_INNER):  # corner at 0, opposite corner at 10
        pairs += [(loop[k], loop[(10 - k) % 20]) for k in range(20)]
    pairs += [(lm.FACE_OVAL[k], lm.FACE_OVAL[(36 - k) % 36]) for k in range(36)]  # top at 0, chin at 18
    nose = [(278, 48), (294, 64), (327, 98), (326, 97), (344, 115), (440, 220), (275, 45)]
    pairs += nose + [(b, a) for a, b in nose] + [(i, i) for i in (1, 2, 4, 5, 6, 19, 94, 168, 195, 197)]
    table = np.arange(lm.NUM_LANDMARKS)
    for a, b in pairs:
        table[a], table[b] = b, a
    return table


MIRROR = _mirror_pairs()  # MIRROR[i]: the landmark mirroring i across the face's midline


@dataclass(frozen=True)
class GroupMove:
    """How one landmark group moves: scaled (sx, sy) about a centre, then moved (dx, dy).

    Lengths are eye distances, along the face's axes (x: towards the subject's
    left eye, y: towards the chin). ``about``: the group whose centre is the
    scale's centre (default: this group).
    """

    group: str
    scale: tuple[float, float] = (1.0, 1.0)
    move: tuple[float, float] = (0.0, 0.0)
    about: str = ""


@dataclass(frozen=True)
class WarpPreset:
    """A named set of group moves plus an optional mirror-averaging amount (0..1)."""

    name: str
    moves: tuple[GroupMove, ...] = ()
    symmetry: float = 0.0


@dataclass(frozen=True)
class WarpParams:
    """preset: big_eyes, slim_jaw, smile_lift, narrow_nose, symmetrize, or a .toml/.json
    file of group moves; strength: 0 is the identity, 1 the preset as written (up to
    2); margin: how far beyond the face oval the warp reaches and fades out, in eye
    distances."""

    preset: str = "big_eyes"
    strength: float = 1.0
    margin: float = 0.6

    def __post_init__(self) -> None:
        check_range("strength", self.strength, 0.0, 2.0)
        check_range("margin", self.margin, 0.1, 2.0)
        load_preset(self.preset)  # a bad preset is reported when the filter is set up


def load_preset(name: str) -> WarpPreset:
    """A built-in preset by name, or a user preset from a .toml or .json file."""
    if name.lower().endswith((".toml", ".json")):
        path = Path(name).expanduser()
        if not path.is_file():
            raise InputNotFoundError(f"preset file {path} does not exist; give a .toml or .json file of group moves.")
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise BadInputError(f"preset file {path} is not a text file; give a .toml or .json file of group moves.") from None
        except OSError as exc:
            raise BadInputError(f"preset file {path} cannot be read ({exc.strerror}); check its permissions.") from None
        return parse_preset(_decode(text, path), f"preset file {path}", path.stem)
    if name not in BUILTIN_PRESETS:
        raise OptionError(f"unknown preset {name!r}; expected one of {', '.join(BUILTIN_PRESETS)} "
                          "or a .toml/.json preset file.")
    path = PRESET_DIR / f"{name}.toml"
    return parse_preset(_decode(path.read_text(encoding="utf-8"), path), f"built-in preset {name}", name)


def _decode(text: str, path: Path) -> Any:
    try:
        return json.loads(text) if path.suffix.lower() == ".json" else tomllib.loads(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as exc:
        kind = "JSON" if path.suffix.lower() == ".json" else "TOML"
        raise BadInputError(f"preset file {path} is not valid {kind} ({exc}).") from None


def parse_preset(doc: Any, where: str, name: str = "preset") -> WarpPreset:
    """Validate a decoded preset document; every problem is one sentence naming ``where``."""
    if not isinstance(doc, Mapping):
        raise BadInputError(f"{where}: expected a table with 'groups' and/or 'symmetry', got {type(doc).__name__}.")
    unknown = set(doc) - {"groups", "symmetry"}
    if unknown:
        raise BadInputError(f"{where}: unknown key {sorted(unknown)[0]!r}; expected groups or symmetry.")
    symmetry = _number(doc.get("symmetry", 0.0), where, "symmetry", 0.0, 1.0)
    groups = doc.get("groups", {})
    if not isinstance(groups, Mapping):
        raise BadInputError(f"{where}: groups must be a table of group name → move, got {type(groups).__name__}.")
    moves = tuple(_group_move(group, spec, where) for group, spec in groups.items())
    if not moves and symmetry == 0:
        raise BadInputError(f"{where} moves nothing; give at least one group under 'groups' or a symmetry above 0.")
    return WarpPreset(name, moves, symmetry)


def _group_move(group: str, spec: Any, where: str) -> GroupMove:
    known = ", ".join(GROUPS)
    if group not in GROUPS:
        raise BadInputError(f"{where}: unknown landmark group {group!r}; expected one of: {known}.")
    if not isinstance(spec, Mapping):
        raise BadInputError(f"{where}: group {group} expects a table with scale, move and/or about, got {spec!r}.")
    unknown = set(spec) - {"scale", "move", "about"}
    if unknown:
        raise BadInputError(f"{where}: group {group} has unknown key {sorted(unknown)[0]!r}; expected scale, move or about.")
    about = spec.get("about", "")
    if about and about not in GROUPS:
        raise BadInputError(f"{where}: group {group}: about names unknown landmark group {about!r}; expected one of: {known}.")
    scale = _pair(spec.get("scale", 1.0), where, f"group {group}: scale", 0.5, 2.0)
    move = _pair(spec.get("move", [0.0, 0.0]), where, f"group {group}: move", -0.5, 0.5, both=True)
    return GroupMove(group, scale, move, about)


def _pair(value: Any, where: str, what: str, low: float, high: float, both: bool = False) -> tuple[float, float]:
    if isinstance(value, list | tuple):
        if len(value) != 2:
            raise BadInputError(f"{where}: {what} expects two numbers [x, y], got {value!r}.")
        x, y = value
        return _number(x, where, what, low, high), _number(y, where, what, low, high)
    if both:
        raise BadInputError(f"{where}: {what} expects two numbers [x, y], got {value!r}.")
    v = _number(value, where, what, low, high)
    return v, v


def _number(value: Any, where: str, what: str, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise BadInputError(f"{where}: {what} expects a number, got {value!r}.")
    if not low <= value <= high:
        raise BadInputError(f"{where}: {what} expects values from {low:g} to {high:g}, got {value:g}.")
    return float(value)


def face_axes(points: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """Eye distance and the face's unit axes: x towards the subject's left eye, y towards the chin."""
    left, right = lm.eye_centers(points)
    along = left - right
    eye_dist = float(np.hypot(*along))
    u = along / max(eye_dist, 1e-6)
    return eye_dist, u, np.array([-u[1], u[0]])


def preset_displacements(points: np.ndarray, preset: WarpPreset) -> tuple[np.ndarray, np.ndarray]:
    """Where each landmark should move, in frame pixels, at strength 1: ((478, 2), moved (478,) bool)."""
    pts = np.asarray(points[:, :2], np.float64)
    eye_dist, u, v = face_axes(pts)
    disp = np.zeros_like(pts)
    moved = np.zeros(len(pts), bool)
    for m in preset.moves:
        idx = list(GROUPS[m.group])
        centre = pts[list(GROUPS[m.about or m.group])].mean(0)
        rel = pts[idx] - centre
        a, b = rel @ u, rel @ v
        disp[idx] += np.outer((m.scale[0] - 1.0) * a, u) + np.outer((m.scale[1] - 1.0) * b, v)
        disp[idx] += eye_dist * (m.move[0] * u + m.move[1] * v)
        moved[idx] = True
    if preset.symmetry > 0:
        feat = list(FEATURES)
        disp[feat] += preset.symmetry * (mirror_average(points)[feat] - pts[feat])
        moved[feat] = True
    return disp, moved


def mirror_average(points: np.ndarray) -> np.ndarray:
    """(478, 2) landmarks averaged with their mirror images across the face's plane of symmetry.

    Done in 3-D with mediapipe's depth when present, so a turned head is
    symmetrised about its own midline rather than flattened to face the camera.
    """
    pts = np.asarray(points, np.float64)
    feat = np.asarray(FEATURES)
    eye_dist, u, _ = face_axes(pts)
    across = pts[feat] - pts[MIRROR[feat]]
    if pts.shape[1] == 2:
        u3 = u
    else:
        u3 = np.concatenate([u, [0.0]])
    # The plane's normal: the mean left-minus-right vector, oriented by the eye line.
    sign = np.sign(across @ u3)
    normal = (across * sign[:, None]).sum(0)
    normal /= max(np.linalg.norm(normal), 1e-9)
    centre = pts[feat].mean(0)  # a symmetric set's centre lies on the plane
    mirrored = pts[MIRROR] - 2.0 * ((pts[MIRROR] - centre) @ normal)[:, None] * normal
    return ((pts + mirrored) * 0.5)[:, :2]


def outer_ring(points: np.ndarray, margin_px: float) -> np.ndarray:
    """The face oval pushed ``margin_px`` outward from its centre: the warp's edge."""
    oval = np.asarray(points[list(lm.FACE_OVAL), :2], np.float64)
    rel = oval - oval.mean(0)
    return oval + rel / np.maximum(np.linalg.norm(rel, axis=1, keepdims=True), 1e-6) * margin_px


def warp_face(image: np.ndarray, points: np.ndarray, preset: WarpPreset, strength: float,
              margin: float) -> FacePatch | None:
    """One face's warp as a patch, or None when nothing moves or the face is off-frame."""
    if strength == 0:
        return None
    disp, moved = preset_displacements(points, preset)
    disp *= strength
    if not np.any(disp):
        return None
    pts = np.asarray(points[:, :2], np.float64)
    eye_dist, _, _ = face_axes(pts)
    ring = outer_ring(points, margin * eye_dist)
    pinned = np.zeros(len(pts), bool)
    pinned[list(FEATURES)] = True
    pinned &= ~moved
    # Backward flow: the output pixel at a landmark's new place shows the landmark.
    controls = np.concatenate([pts[moved] + disp[moved], pts[pinned], ring])
    values = np.concatenate([-disp[moved], np.zeros((pinned.sum() + len(ring), 2))])
    roi = _box(ring, image.shape[:2])
    if roi is None:
        return None
    flow = landmark_flow(controls, values, ring, margin * eye_dist, roi, grid_step(eye_dist))
    pixels = warp_by_flow(image, flow, roi)
    return FacePatch(roi, pixels, np.any(flow != 0, axis=-1).astype(np.float32))


def _box(polygon: np.ndarray, shape: tuple[int, int]) -> tuple[int, int, int, int] | None:
    h, w = shape
    x0, y0 = np.floor(polygon.min(0)).astype(int)
    x1, y1 = np.ceil(polygon.max(0)).astype(int) + 1
    x0, y0, x1, y1 = max(int(x0), 0), max(int(y0), 0), min(int(x1), w), min(int(y1), h)
    return None if x1 <= x0 or y1 <= y0 else (x0, y0, x1, y1)


@register
class WarpFilter(LandmarkFilter):
    """Landmark-driven face warps (big eyes, slim jaw, smile lift, narrow nose, symmetry, your own)."""

    name = "warp"
    Params = WarpParams

    def __init__(self, params: WarpParams, runtime: Any = None, weights: Any = None) -> None:
        super().__init__(params, runtime, weights)
        self._preset = load_preset(params.preset)

    def set_params(self, **changes: str) -> None:
        super().set_params(**changes)
        self._preset = load_preset(self.params.preset)

    def edit(self, image: np.ndarray, faces: Sequence[FaceContext]) -> list[FacePatch]:
        patches = (warp_face(image, face.landmarks, self._preset, self.params.strength, self.params.margin)
                   for face in faces)
        return [p for p in patches if p is not None]
