"""Soft masks from polygons: fill, erode, feather."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np


def feather_mask(polygon: np.ndarray, roi: tuple[int, int, int, int], inner_px: float, outer_px: float,
                 device: Any = None) -> Any:
    """Soft (h, w) float32 mask of a polygon over ``roi``: 0 up to ``inner_px`` inside its edge, 1 from ``outer_px``.

    The ramp between is a smoothstep of the distance to the polygon's edge, so its
    cost is O(pixels) whatever the width (a distance transform on the CPU, the exact
    distance to the edges on a GPU). Negative distances lie outside the polygon: with
    ``inner_px`` ≥ 0 nothing outside it is ever above 0, and a negative ``inner_px``
    puts the ramp's start that far outside (a feather around a shape that must stay covered).
    ``device``: None for a NumPy mask, else a torch device (CPU tensors share the
    OpenCV result's memory; CUDA computes on the device).
    """
    x0, y0, x1, y1 = roi
    if device is not None and str(device) != "cpu":
        return _feather_torch(polygon, roi, inner_px, outer_px, device)
    inside = fill_polygon(polygon, (y1 - y0, x1 - x0), (x0, y0)).astype(np.uint8)
    if inner_px < 0:  # the ramp reaches outside: outside pixels get minus their distance to the shape
        outside = cv2.distanceTransform(1 - inside, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
        dist = 0.5 - outside
        if outer_px > 0:
            dist = np.where(inside > 0, _inside_distance(inside), dist)
        else:  # the ramp ends outside: every inside pixel is 1, its distance does not matter
            dist[inside > 0] = outer_px
    else:
        dist = _inside_distance(inside)
    mask = _smoothstep(dist, inner_px, outer_px)
    if device is None:
        return mask
    import torch

    return torch.from_numpy(mask)


def _inside_distance(inside: np.ndarray) -> np.ndarray:
    """Distance from each inside pixel centre to the nearest outside one, less half a pixel: to the edge."""
    dist = cv2.distanceTransform(inside, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    dist -= 0.5
    return dist


def _smoothstep(dist: Any, inner: float, outer: float) -> Any:
    if outer <= inner:
        return (dist > inner).astype(np.float32) if isinstance(dist, np.ndarray) else (dist > inner).float()
    t = (dist - inner) * (1.0 / (outer - inner))
    t = np.clip(t, 0.0, 1.0, out=t) if isinstance(dist, np.ndarray) else t.clamp_(0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _feather_torch(polygon: np.ndarray, roi: tuple[int, int, int, int], inner: float, outer: float,
                   device: Any) -> Any:
    import torch

    x0, y0, x1, y1 = roi
    pts = torch.as_tensor(np.asarray(polygon, np.float64)[:, :2], device=device, dtype=torch.float32)
    a, b = pts, pts.roll(-1, 0)
    xs = torch.arange(x0, x1, device=device, dtype=torch.float32)
    ys = torch.arange(y0, y1, device=device, dtype=torch.float32)
    p = torch.stack(torch.meshgrid(ys, xs, indexing="ij")[::-1], -1)[..., None, :]  # (h, w, 1, 2)
    ab = b - a
    t = (((p - a) * ab).sum(-1) / (ab * ab).sum(-1).clamp_min(1e-12)).clamp_(0, 1)
    dist = (p - a - t[..., None] * ab).norm(dim=-1).amin(-1)  # (h, w): to the nearest edge
    # even-odd rule: a ray towards +x crosses the edges whose y-span holds the pixel
    py, px = p[..., 1], p[..., 0]
    spans = (a[:, 1] <= py) != (b[:, 1] <= py)
    x_at = a[:, 0] + (py - a[:, 1]) * ab[:, 0] / torch.where(ab[:, 1] == 0, 1e-12, ab[:, 1])
    inside = ((spans & (px < x_at)).sum(-1) % 2) == 1
    return _smoothstep(torch.where(inside, dist, -dist), inner, outer)


# -- one signature, two paths: NumPy/OpenCV arrays or torch tensors ----------
# The region masks and the warp's support use these; a torch tensor stays on its
# device. Border handling matches between the paths (outside counts as inside
# for erosion, as zero for the blur), so the two agree up to edge pixels.


def is_torch(x: object) -> bool:
    """True for a torch tensor (checked without importing torch)."""
    return type(x).__module__.startswith("torch")


def fill_polygon(polygon: Any, shape: tuple[int, int], offset: tuple[float, float] = (0, 0)) -> Any:
    """A hard (H, W) float32 mask, 1 at pixel centres inside the polygon ((K, 2) points).

    A NumPy polygon gives a NumPy mask (OpenCV fill, 4-bit sub-pixel vertices);
    a torch polygon gives a mask on its device (even-odd test at pixel centres).
    """
    if is_torch(polygon):
        return _fill_polygon_torch(polygon, shape, offset)
    mask = np.zeros(shape, np.uint8)
    fill_polygons_into(mask, [polygon], offset)
    return mask.astype(np.float32)


def fill_polygons_into(mask: np.ndarray, polygons: Sequence[np.ndarray], offset: tuple[float, float] = (0, 0)) -> None:
    """Set the pixels of a (H, W) uint8 ``mask`` whose centres lie inside any of the polygons to 1, in
    place: ``fill_polygon``'s NumPy fill, one polygon at a time (one call with them all would fill
    their overlaps by the even-odd rule), their vertices converted to fixed point together."""
    shift = 4
    xy = np.concatenate([np.asarray(p, np.float64)[:, :2] for p in polygons])
    pts = np.round((xy - np.asarray(offset)) * (1 << shift)).astype(np.int32)
    start = 0
    for p in polygons:
        cv2.fillPoly(mask, [pts[start : start + len(p)]], 1, lineType=cv2.LINE_8, shift=shift)
        start += len(p)


def erode(mask: Any, radius: float) -> Any:
    """Shrink a (H, W) float32 mask by ``radius`` pixels (elliptic element, rounded)."""
    r = int(round(radius))
    if r <= 0:
        return mask
    element = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
    if not is_torch(mask):
        return cv2.erode(mask, element)
    import torch.nn.functional as F

    # a minimum over the element's offsets; beyond the border counts as inside (+inf)
    h, w = mask.shape
    padded = F.pad(mask[None, None], (r, r, r, r), value=float("inf"))[0, 0]
    out = mask.clone()
    for dy, dx in zip(*np.nonzero(element), strict=True):
        out = out.minimum(padded[dy:dy + h, dx:dx + w])
    return out


def blur(mask: Any, sigma: float) -> Any:
    """Gaussian blur of a (H, W) float32 mask (kernel 2·⌈3σ⌉+1, zeros beyond the border), at most 1:
    a mask of ones came out 1.0000001 in places (float sums), which a strength of 0.5 turned into a
    mask above 0.5."""
    if sigma <= 0:
        return mask
    k = 2 * int(np.ceil(3 * sigma)) + 1
    if not is_torch(mask):
        out = cv2.GaussianBlur(mask, (k, k), sigma, borderType=cv2.BORDER_CONSTANT)
        return np.minimum(out, 1.0, out=out)
    import torch.nn.functional as F

    g = mask.new_tensor(cv2.getGaussianKernel(k, sigma)[:, 0])
    out = F.conv2d(mask[None, None], g.view(1, 1, k, 1), padding=(k // 2, 0))
    return F.conv2d(out, g.view(1, 1, 1, k), padding=(0, k // 2))[0, 0].clamp_(max=1.0)


def _fill_polygon_torch(polygon: Any, shape: tuple[int, int], offset: tuple[float, float]) -> Any:
    import torch

    h, w = shape
    pts = polygon[:, :2].to(torch.float64) - polygon.new_tensor(offset, dtype=torch.float64)
    xs = torch.arange(w, device=pts.device, dtype=torch.float64)[None]
    ys = torch.arange(h, device=pts.device, dtype=torch.float64)[:, None]
    inside = torch.zeros((h, w), dtype=torch.bool, device=pts.device)
    edges = torch.zeros_like(inside)
    for (ax, ay), (bx, by) in zip(pts.tolist(), pts.roll(-1, 0).tolist(), strict=True):
        if ay != by:  # even-odd rule at pixel centres: count crossings of a ray to +x
            spans = (ys >= min(ay, by)) & (ys < max(ay, by))
            inside ^= spans & (xs < ax + (ys - ay) * ((bx - ax) / (by - ay)))
        # OpenCV also sets the pixels its line drawing puts on each edge: one per
        # step along the edge's major axis, the nearest on the minor one.
        if abs(bx - ax) >= abs(by - ay):
            on = (xs >= min(ax, bx) - 0.5) & (xs <= max(ax, bx) + 0.5)
            y_at = ay + (xs - ax) * ((by - ay) / (bx - ax)) if bx != ax else ys * 0 + ay
            edges |= on & ((ys - y_at).abs() <= 0.5)
        else:
            on = (ys >= min(ay, by) - 0.5) & (ys <= max(ay, by) + 0.5)
            edges |= on & ((xs - (ax + (ys - ay) * ((bx - ax) / (by - ay)))).abs() <= 0.5)
    return (inside | edges).to(torch.float32)
