"""Dense flow through a face mesh: piecewise affine maps between two faces' landmarks.

Convention: points are (K, 2+) landmarks in frame pixels (pixel centres at integer
coordinates, as OpenCV counts them); triangles are (T, 3) indices into them; a map is
(h, w, 2) float32 of source coordinates for each pixel of a ``roi`` (x0, y0, x1, y1) of
the destination frame, ready for ``cv2.remap``. Inside each triangle of the destination
mesh the map is the affine that takes the triangle onto its twin in the source mesh; the
map is continuous across edges, so it is computed on a coarse grid and interpolated. The
grid is rasterised in one vectorised pass (barycentric weights of the grid points in each
triangle's bounding box), not a fill call per triangle. The border triangles reach half a
grid step beyond the mesh (never past weight −½, so a sliver cannot fling a pixel away);
pixels further out take the least-squares affine of the whole mesh.
"""

from __future__ import annotations

import cv2
import numpy as np

Roi = tuple[int, int, int, int]
GRID_POINTS = 2048  # coarse-grid size the map is computed at before interpolation
MAX_STEP = 4  # px between grid points at most: face triangles at 720p are 5-20 px across


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


def global_affine(dst: np.ndarray, src: np.ndarray) -> np.ndarray:
    """(2, 3): the least-squares affine from the destination points to the source points.

    The normal equations about both centroids, solved in closed form (2×2): a few hundred points
    need no LAPACK call (``np.linalg.lstsq`` costs ten times more, more again on a busy machine).
    """
    n = len(dst)
    x, y = np.ascontiguousarray(dst.T)
    mx, my = x.sum() / n, y.sum() / n
    dx, dy = x - mx, y - my
    sxx, sxy, syy = (dx * dx).sum(), (dx * dy).sum(), (dy * dy).sum()
    det = sxx * syy - sxy * sxy
    out = np.empty((2, 3))
    for row, s in enumerate(np.ascontiguousarray(src.T)):
        sx, sy = (dx * s).sum(), (dy * s).sum()
        out[row, 0] = (syy * sx - sxy * sy) / det
        out[row, 1] = (sxx * sy - sxy * sx) / det
        out[row, 2] = s.sum() / n - out[row, 0] * mx - out[row, 1] * my
    return out


def grid_step(roi: Roi) -> int:
    """Pixels between coarse-grid points for a roi: about ``GRID_POINTS`` points, at most ``MAX_STEP`` px apart."""
    x0, y0, x1, y1 = roi
    return min(max(round(((x1 - x0) * (y1 - y0) / GRID_POINTS) ** 0.5), 1), MAX_STEP)


def border_triangles(triangles: np.ndarray) -> np.ndarray:
    """(T,) bool: the triangles with an edge on the mesh's outer border (an edge no other triangle shares)."""
    edges = np.sort(np.stack([triangles, np.roll(triangles, -1, axis=1)], -1), -1).reshape(-1, 2)
    key = edges[:, 0].astype(np.int64) * (int(triangles.max()) + 1) + edges[:, 1]
    _, inverse, counts = np.unique(key, return_inverse=True, return_counts=True)
    return (counts[inverse.reshape(-1, 3)] == 1).any(1)


def grid_cover(
    xs: np.ndarray, ys: np.ndarray, gw: int, gh: int, reach: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Which triangles cover which points of a (gh, gw) grid, one entry per (triangle, point) pair:
    (triangle, gx, gy, weights (3, P): the point's barycentric coordinates, inside).

    xs, ys: (3, T) the triangles' corners in grid units. Every grid point of each triangle's
    bounding box is a candidate (a few per triangle on a coarse grid): one vectorised pass instead
    of a fill call per triangle. ``inside``: the point lies in the triangle (its edges included).
    Points outside it but within ``reach`` (T,) grid units of its edges (along each edge's minor
    axis, as an 8-connected line covers them) come back too, where extrapolating the triangle
    stays within half of it (weights ≥ −½: a sliver on the mesh's border does not fling them away).
    """
    # Per triangle, each barycentric weight as a linear function of the grid point: edge a→b gives
    # the weight of c, b→c of a, c→a of b (the signed area the point makes with the edge, over the
    # triangle's); a point near the triangle may sit ``reach`` outside an edge but no further out
    # than weight −½.
    det = (xs[1] - xs[0]) * (ys[2] - ys[0]) - (ys[1] - ys[0]) * (xs[2] - xs[0])  # twice the area
    ok = np.abs(det) > 1e-9
    inv = np.where(ok, 1.0, 0.0) / np.where(ok, det, 1.0)
    linear = []
    for p, q in ((1, 2), (2, 0), (0, 1)):
        ex, ey = (xs[q] - xs[p]) * inv, (ys[q] - ys[p]) * inv
        run = np.maximum(np.maximum(np.abs(xs[q] - xs[p]), np.abs(ys[q] - ys[p])), 1e-12)
        floor = np.maximum(-reach * run * np.abs(inv), -0.5)
        linear.append((-ey, ex, ey * xs[p] - ex * ys[p], floor))
    lo_x = np.maximum(np.ceil(np.minimum(np.minimum(xs[0], xs[1]), xs[2]) - reach), 0)
    lo_y = np.maximum(np.ceil(np.minimum(np.minimum(ys[0], ys[1]), ys[2]) - reach), 0)
    hi_x = np.minimum(np.floor(np.maximum(np.maximum(xs[0], xs[1]), xs[2]) + reach), gw - 1)
    hi_y = np.minimum(np.floor(np.maximum(np.maximum(ys[0], ys[1]), ys[2]) + reach), gh - 1)
    width = np.maximum(hi_x - lo_x + 1, 0).astype(np.intp)
    count = np.where(ok, width * np.maximum(hi_y - lo_y + 1, 0).astype(np.intp), 0)
    tri = np.repeat(np.arange(len(count)), count)
    k = np.arange(len(tri)) - np.repeat(np.cumsum(count) - count, count)
    row, col = np.divmod(k, width[tri])
    gx, gy = lo_x.astype(np.intp)[tri] + col, lo_y.astype(np.intp)[tri] + row
    fx, fy = gx.astype(np.float64), gy.astype(np.float64)
    near = inside = None
    weights = []
    for wx, wy, w0, floor in linear:
        weight = wx[tri] * fx + wy[tri] * fy + w0[tri]
        weights.append(weight)
        now_near, now_inside = weight >= floor[tri], weight >= -1e-9
        near = now_near if near is None else near & now_near
        inside = now_inside if inside is None else inside & now_inside
    keep = np.flatnonzero(near | inside)
    return (
        tri[keep],
        gx[keep],
        gy[keep],
        np.stack([weight[keep] for weight in weights]),
        inside[keep],
    )


def mesh_map(
    dst_points: np.ndarray,
    src_points: np.ndarray,
    triangles: np.ndarray,
    roi: Roi,
    border: np.ndarray | None = None,
) -> np.ndarray:
    """(h, w, 2) float32: for each pixel of ``roi`` in the destination, where it lies in the source (piecewise affine).

    border: ``border_triangles(triangles)``, computed once per mesh by a caller that has one.
    """
    dst = np.asarray(dst_points[:, :2], np.float64)
    src = np.asarray(src_points[:, :2], np.float64)
    x0, y0, x1, y1 = roi
    step = grid_step(roi)
    gw, gh = (
        (x1 - x0 - 1) // step + 2,
        (y1 - y0 - 1) // step + 2,
    )  # grid covers the roi's last pixel
    # (3, T): one 1-D array per corner, as NumPy is slow on axes of length 2 or 3.
    corners = triangles.T
    grid = (dst - (x0, y0)) / step
    # The mesh's border reaches half a grid step further out (the feather outside a face's
    # outline keeps following its border triangles rather than the whole mesh's affine).
    reach = np.where(border_triangles(triangles) if border is None else border, 0.5, 0.0)
    tri, gx, gy, weights, inside = grid_cover(
        grid[:, 0][corners], grid[:, 1][corners], gw, gh, reach
    )
    affine = global_affine(dst, src)  # outside the mesh
    gxs = x0 + step * np.arange(gw, dtype=np.float64)
    gys = y0 + step * np.arange(gh, dtype=np.float64)
    coarse = np.empty((gh, gw, 2), np.float32)
    for c in range(2):
        coarse[..., c] = affine[c, 2] + affine[c, 0] * gxs[None, :] + affine[c, 1] * gys[:, None]
        # Inside a triangle the map is the blend of its source corners by the point's weights.
        at = src[:, c][corners]  # (3, T)
        value = weights[0] * at[0][tri] + weights[1] * at[1][tri] + weights[2] * at[2][tri]
        # Points inside a triangle are written last (over the half step beside a border triangle).
        coarse[gy[~inside], gx[~inside], c] = value[~inside]
        coarse[gy[inside], gx[inside], c] = value[inside]
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
    border: np.ndarray | None = None,
) -> np.ndarray:
    """The source image carried onto ``roi`` of the destination by the mesh map: (h, w, 3) like ``source``."""
    flow = mesh_map(dst_points, src_points, triangles, roi, border)
    return cv2.remap(source, flow, None, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
