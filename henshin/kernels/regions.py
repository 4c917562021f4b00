"""Semantic face regions as soft masks, from the 478 face-mesh landmarks.

In the spirit of MaskGAN's mask-as-intermediate (Lee et al., CVPR 2020), a face
is parsed into regions (lips, inner mouth, eyes, irises, brows, skin, the face
oval, the beard area around the mouth) that filters and the compositor can work inside; here the parse comes
from the landmarks instead of a network, so it needs no weights. A region is a
union of landmark polygons, optionally clipped by others (an iris is only
visible between the eyelids) and minus others (skin is the oval minus the
features). The mask is filled at frame resolution and feathered with a
Gaussian centred on the region's edge.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import numpy as np

from henshin.kernels import landmarks as lm
from henshin.kernels.masks import blur, fill_polygon, fill_polygons_into, is_torch

Roi = tuple[int, int, int, int]


@dataclass(frozen=True)
class RegionSpec:
    """Which landmark shapes make a region: include ∩ clip − exclude.

    exclude_grow: whether the excluded shapes grow by the feather width, so the
    region's soft edge stays off them (skin must not tint the eyes).
    """

    include: tuple[str, ...]
    clip: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    exclude_grow: bool = False


REGIONS: dict[str, RegionSpec] = {
    "lips": RegionSpec(("lips_outer",), exclude=("lips_inner",)),
    "inner_mouth": RegionSpec(("lips_inner",)),
    "eyes": RegionSpec(("left_eye", "right_eye")),
    "irises": RegionSpec(("left_iris", "right_iris"), clip=("left_eye", "right_eye")),
    "brows": RegionSpec(("left_brow", "right_brow")),
    "skin": RegionSpec(("oval",), exclude=("left_eye", "right_eye", "left_brow", "right_brow", "lips_outer"),
                       exclude_grow=True),
    "oval": RegionSpec(("oval",)),
    "beard": RegionSpec(("beard",), exclude=("lips_outer",), exclude_grow=True),
}

_LOOPS: dict[str, tuple[int, ...]] = {
    "oval": lm.FACE_OVAL, "lips_outer": lm.LIPS_OUTER, "lips_inner": lm.LIPS_INNER,
    "left_eye": lm.LEFT_EYE, "right_eye": lm.RIGHT_EYE, "left_brow": lm.LEFT_BROW, "right_brow": lm.RIGHT_BROW,
    "beard": lm.BEARD,
}
_IRISES = {"left_iris": (lm.LEFT_IRIS_CENTER, lm.LEFT_IRIS), "right_iris": (lm.RIGHT_IRIS_CENTER, lm.RIGHT_IRIS)}
_CIRCLE = np.stack([np.cos(t := np.linspace(0, 2 * np.pi, 24, endpoint=False)), np.sin(t)], 1)


def shape_polygon(points: np.ndarray, name: str, grow_px: float = 0.0) -> np.ndarray:
    """The (K, 2) frame-pixel polygon of one landmark shape, grown outward by ``grow_px``."""
    return shape_polygons(points, (name,), grow_px)[0]


def shape_polygons(points: np.ndarray, names: tuple[str, ...], grow_px: float = 0.0) -> list[np.ndarray]:
    """``shape_polygon`` of each name, the landmark loops grown together in one pass (the same values:
    a region with five shapes pays for one set of array calls, not five)."""
    loops = tuple(n for n in names if n not in _IRISES)
    grown = {}
    if loops:
        layout = _loop_layout(loops)
        poly = np.asarray(points[layout.index, :2], np.float64)
        if grow_px > 0:
            poly = _offset(poly, grow_px, layout)
        grown = {n: poly[a:b] for n, (a, b) in zip(loops, layout.spans, strict=True)}
    return [grown[n] if n in grown else _iris(points, n, grow_px) for n in names]


def _iris(points: np.ndarray, name: str, grow_px: float) -> np.ndarray:
    centre, ring = _IRISES[name]
    c = points[centre, :2]
    radius = float(np.linalg.norm(points[list(ring), :2] - c, axis=1).mean())
    return c + _CIRCLE * (radius + grow_px)


@dataclass(frozen=True)
class _Layout:
    """Landmark loops laid end to end: their landmark indices, each vertex's next and previous
    vertex within its own loop, which loop it belongs to, where each loop starts, and its span."""

    index: np.ndarray
    after: np.ndarray
    before: np.ndarray
    owner: np.ndarray
    starts: np.ndarray
    spans: tuple[tuple[int, int], ...]


@functools.cache
def _loop_layout(names: tuple[str, ...]) -> _Layout:
    index: list[int] = []
    after: list[int] = []
    before: list[int] = []
    owner: list[int] = []
    spans: list[tuple[int, int]] = []
    for k, name in enumerate(names):
        loop, first = _LOOPS[name], len(index)
        n = len(loop)
        spans.append((first, first + n))
        index += loop
        after += [first + (i + 1) % n for i in range(n)]
        before += [first + (i - 1) % n for i in range(n)]
        owner += [k] * n
    arrays = (np.asarray(a, np.intp) for a in (index, after, before, owner, [a for a, _ in spans]))
    return _Layout(*arrays, tuple(spans))


def _offset(poly: np.ndarray, px: float, layout: _Layout) -> np.ndarray:
    """Loops (laid out as ``layout`` says) with each vertex moved ``px`` outward along its normal
    (long thin shapes like brows grow across, not only at their ends)."""
    after = layout.after
    edges = poly[after] - poly
    normals = np.stack([edges[:, 1], -edges[:, 0]], 1)
    normals /= np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-9)
    vertex = normals + normals[layout.before]
    vertex /= np.maximum(np.linalg.norm(vertex, axis=1, keepdims=True), 1e-9)
    # (dy, −dx) points outward for one winding; each loop's shoelace sign says which one it has.
    area = np.add.reduceat(poly[:, 0] * poly[after, 1] - poly[after, 0] * poly[:, 1], layout.starts)
    return poly + vertex * np.where(area > 0, px, -px)[layout.owner][:, None]


def region_box(points: np.ndarray, region: str, feather_px: float, shape: tuple[int, int]) -> Roi | None:
    """The frame box (x0, y0, x1, y1) that holds ``region``'s soft mask; None when off-frame."""
    spec = REGIONS[region]
    xy = np.concatenate([shape_polygon(points, n) for n in spec.include])
    pad = 2.0 * feather_px + 2.0
    h, w = shape
    x0, y0 = np.floor(xy.min(0) - pad).astype(int)
    x1, y1 = np.ceil(xy.max(0) + pad).astype(int)
    x0, y0, x1, y1 = max(int(x0), 0), max(int(y0), 0), min(int(x1), w), min(int(y1), h)
    return None if x1 <= x0 or y1 <= y0 else (x0, y0, x1, y1)


def region_mask(points: Any, region: str, roi: Roi, feather_px: float) -> Any:
    """Soft (h, w) float32 mask of ``region`` over ``roi`` of the frame, 0..1.

    points: (478, 2+) landmarks in frame pixels: a NumPy array (OpenCV path) or
    a torch tensor (the mask is built on its device). The edge is a Gaussian
    ramp about ``feather_px`` wide on each side of the region's outline (0.5 on it).
    """
    if region not in REGIONS:
        raise KeyError(f"unknown region {region!r}; expected one of: {', '.join(REGIONS)}")
    if not is_torch(points):
        return _region_mask_host(np.asarray(points), REGIONS[region], roi, feather_px)
    host = points.detach().cpu().numpy()
    spec = REGIONS[region]
    x0, y0, x1, y1 = roi
    shape, offset = (y1 - y0, x1 - x0), (x0, y0)

    def union(names: tuple[str, ...], grow: float = 0.0) -> Any:
        out = None
        for name in names:
            poly = _torch().as_tensor(shape_polygon(host, name, grow), device=points.device)
            filled = fill_polygon(poly, shape, offset)
            out = filled if out is None else filled.maximum(out)
        return out

    mask = union(spec.include)
    if spec.clip:
        mask = mask * union(spec.clip)
    if spec.exclude:
        mask = mask * (1.0 - union(spec.exclude, feather_px if spec.exclude_grow else 0.0))
    return blur(mask, feather_px / 3.0)


def _region_mask_host(points: np.ndarray, spec: RegionSpec, roi: Roi, feather_px: float) -> np.ndarray:
    """The NumPy/OpenCV path of ``region_mask``: the same fills (``fill_polygon``'s), each set of
    shapes painted into one byte mask (a union without a float mask per shape), then one blur."""
    x0, y0, x1, y1 = roi
    shape = (y1 - y0, x1 - x0)

    def union(names: tuple[str, ...], grow: float = 0.0) -> np.ndarray:
        out = np.zeros(shape, np.uint8)
        fill_polygons_into(out, shape_polygons(points, names, grow), (x0, y0))
        return out

    mask = union(spec.include)
    if spec.clip:
        mask &= union(spec.clip)
    if spec.exclude:
        mask &= 1 - union(spec.exclude, feather_px if spec.exclude_grow else 0.0)
    return blur(mask.astype(np.float32), feather_px / 3.0)


def _torch() -> Any:
    import torch

    return torch
