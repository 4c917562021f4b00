"""Dense flow through a face mesh: piecewise affine maps between two faces' landmarks.

Convention: points are (K, 2+) landmarks in frame pixels (pixel centres at integer
coordinates, as OpenCV counts them); triangles are (T, 3) indices into them; a map is
(h, w, 2) float32 of source coordinates for each pixel of a ``roi`` (x0, y0, x1, y1) of
the destination frame, ready for ``cv2.remap``. Inside each triangle of the destination
mesh the map is the affine that takes the triangle onto its twin in the source mesh; the
map is continuous across edges, so it is computed on a coarse grid and interpolated.
Pixels outside the mesh take the least-squares affine of the whole mesh.
"""

from __future__ import annotations

import cv2
import numpy as np

Roi = tuple[int, int, int, int]
GRID_POINTS = 2048  # coarse-grid size the map is computed at before interpolation
MAX_STEP = 4  # px between grid points at most: face triangles at 720p are 5-20 px across
_SHIFT = 4  # fillConvexPoly's fractional bits: vertices at 1/16 px


def triangulate(points: np.ndarray) -> np.ndarray:
    """A Delaunay triangulation of ``points`` (K, 2+) as (T, 3) int32 indices (``cv2.Subdiv2D``)."""
    xy = np.asarray(points[:, :2], np.float64)
    lo, hi = xy.min(0) - 1.0, xy.max(0) + 1.0
    subdiv = cv2.Subdiv2D(
        (
            int(np.floor(lo[0])),
            int(np.floor(lo[1])),
            int(np.ceil(hi[0] - lo[0])) + 2,
            int(np.ceil(hi[1] - lo[1])) + 2,
        )
    )
    for x, y in xy:
        subdiv.insert((float(x), float(y)))
    corners = subdiv.getTriangleList().reshape(-1, 3, 2)
    # Subdiv2D returns vertex coordinates; the nearest input point is each vertex's index
    # (triangles touching its virtual outer vertices find no point within a pixel and are dropped).
    dist = np.linalg.norm(corners[:, :, None, :] - xy[None, None], axis=-1)
    index = dist.argmin(-1)
    keep = (
        (dist.min(-1) < 0.5).all(1)
        & (index[:, 0] != index[:, 1])
        & (index[:, 1] != index[:, 2])
        & (index[:, 0] != index[:, 2])
    )
    return index[keep].astype(np.int32)


def triangle_affines(dst: np.ndarray, src: np.ndarray) -> np.ndarray:
    """(T, 2, 3) affines taking each destination triangle (T, 3, 2) onto its source triangle; degenerate ones get 0.

    In closed form (a batched ``np.linalg.solve`` of 3×3 systems costs milliseconds):
    with edges E = [p1 − p0, p2 − p0] and F = [q1 − q0, q2 − q0], L = F·E⁻¹ and t = q0 − L·p0.
    """
    e1, e2 = dst[:, 1] - dst[:, 0], dst[:, 2] - dst[:, 0]
    f1, f2 = src[:, 1] - src[:, 0], src[:, 2] - src[:, 0]
    det = e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]
    flat = np.abs(det) < 1e-6
    inv = np.where(flat, 0.0, 1.0 / np.where(flat, 1.0, det))
    # E⁻¹ = [[e2y, −e2x], [−e1y, e1x]] / det
    a = (f1[:, :, None] * e2[:, None, 1:2] - f2[:, :, None] * e1[:, None, 1:2])[..., 0] * inv[
        :, None
    ]  # L[:, :, 0]
    b = (f2[:, :, None] * e1[:, None, 0:1] - f1[:, :, None] * e2[:, None, 0:1])[..., 0] * inv[
        :, None
    ]  # L[:, :, 1]
    t = src[:, 0] - a * dst[:, 0, 0:1] - b * dst[:, 0, 1:2]
    return np.stack([a, b, t], axis=2)


def global_affine(dst: np.ndarray, src: np.ndarray) -> np.ndarray:
    """(2, 3): the least-squares affine from the destination points to the source points."""
    a = np.concatenate([dst, np.ones((len(dst), 1))], axis=1)
    return np.linalg.lstsq(a, src, rcond=None)[0].T


def grid_step(roi: Roi) -> int:
    """Pixels between coarse-grid points for a roi: about ``GRID_POINTS`` points, at most ``MAX_STEP`` px apart."""
    x0, y0, x1, y1 = roi
    return int(np.clip(round(np.sqrt((x1 - x0) * (y1 - y0) / GRID_POINTS)), 1, MAX_STEP))


def mesh_map(
    dst_points: np.ndarray, src_points: np.ndarray, triangles: np.ndarray, roi: Roi
) -> np.ndarray:
    """(h, w, 2) float32: for each pixel of ``roi`` in the destination, where it lies in the source (piecewise affine)."""
    dst = np.asarray(dst_points[:, :2], np.float64)
    src = np.asarray(src_points[:, :2], np.float64)
    x0, y0, x1, y1 = roi
    step = grid_step(roi)
    gw, gh = (
        (x1 - x0 - 1) // step + 2,
        (y1 - y0 - 1) // step + 2,
    )  # grid covers the roi's last pixel
    tri_dst = dst[triangles]
    lo, hi = tri_dst.min(1), tri_dst.max(1)
    # Only triangles that hold a grid point of the roi: on a coarse grid most small ones hold none
    # (fillConvexPoly marks no pixel centre they miss, so leaving them out changes nothing but time).
    glo, ghi = np.ceil((lo - (x0, y0)) / step), np.floor((hi - (x0, y0)) / step)
    holds = (
        (ghi[:, 0] >= np.maximum(glo[:, 0], 0))
        & (np.minimum(ghi[:, 0], gw - 1) >= glo[:, 0])
        & (ghi[:, 1] >= np.maximum(glo[:, 1], 0))
        & (np.minimum(ghi[:, 1], gh - 1) >= glo[:, 1])
    )
    chosen = np.flatnonzero(holds)
    affines = np.concatenate(
        [triangle_affines(tri_dst[chosen], src[triangles[chosen]]), global_affine(dst, src)[None]]
    )
    labels = np.full((gh, gw), len(chosen), np.int32)  # the last affine: outside the mesh
    vertices = np.round((tri_dst[chosen] - (x0, y0)) / step * (1 << _SHIFT)).astype(np.int32)
    for i, triangle in enumerate(
        vertices
    ):  # a few hundred small polygons: C calls, no per-pixel Python
        cv2.fillConvexPoly(labels, triangle, i, cv2.LINE_8, _SHIFT)
    gx, gy = np.meshgrid(
        x0 + step * np.arange(gw, dtype=np.float64), y0 + step * np.arange(gh, dtype=np.float64)
    )
    m = affines[labels]  # (gh, gw, 2, 3)
    coarse = m[..., 2] + m[..., 0] * gx[..., None] + m[..., 1] * gy[..., None]
    coarse = coarse.astype(np.float32)
    if step == 1:
        return np.ascontiguousarray(coarse[: y1 - y0, : x1 - x0])
    scale = np.array(
        [[step, 0, 0], [0, step, 0]], np.float64
    )  # grid point j lands on pixel step·j exactly
    return cv2.warpAffine(
        coarse, scale, (x1 - x0, y1 - y0), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
    )


def warp_through_mesh(
    source: np.ndarray,
    dst_points: np.ndarray,
    src_points: np.ndarray,
    triangles: np.ndarray,
    roi: Roi,
) -> np.ndarray:
    """The source image carried onto ``roi`` of the destination by the mesh map: (h, w, 3) like ``source``."""
    flow = mesh_map(dst_points, src_points, triangles, roi)
    return cv2.remap(source, flow, None, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
