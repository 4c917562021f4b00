"""Dense flow from a few point displacements, and the warp it drives.

The flow is a thin-plate spline (Bookstein, "Principal warps", PAMI 1989)
through control points, evaluated on a coarse grid and upsampled bilinearly
(the spline is smooth, so a node every few pixels loses nothing visible), then
tapered to exactly zero at the edge of a support polygon. It is a *backward*
flow: the output pixel at ``p`` shows the input at ``p + flow(p)``, which is
what a remap needs and what makes the warp one resampling of the region.

Both kernels take NumPy arrays (OpenCV path) or torch tensors (torch path, on
the tensor's device) behind one signature each.
"""

from __future__ import annotations

import math
from typing import Any

import cv2
import numpy as np

from henshin.kernels.masks import blur, erode, fill_polygon, is_torch

Roi = tuple[int, int, int, int]


def tps_weights(controls: np.ndarray, values: np.ndarray, smoothing: float = 1e-4) -> tuple[np.ndarray, np.ndarray]:
    """Fit a 2-D thin-plate spline through (K, 2) ``controls`` with (K, 2) ``values``.

    Returns the kernel weights (K, 2) and the affine part (3, 2) for coordinates
    divided by ``tps_scale(controls)``. ``smoothing`` (in those units) trades exact
    interpolation for stability where controls with different values lie close.
    """
    pts = controls / tps_scale(controls)
    k = len(pts)
    system = np.zeros((k + 3, k + 3), np.float64)
    system[:k, :k] = _tps_kernel(_pairwise_sq(pts, pts))
    system[:k, :k] += np.eye(k) * smoothing
    system[:k, k] = 1.0
    system[:k, k + 1:] = pts
    system[k, :k] = 1.0
    system[k + 1:, :k] = pts.T
    rhs = np.zeros((k + 3, 2), np.float64)
    rhs[:k] = values
    solved = np.linalg.lstsq(system, rhs, rcond=None)[0] if k < 3 else np.linalg.solve(system, rhs)
    return solved[:k], solved[k:]


def tps_scale(controls: np.ndarray) -> float:
    """The length the spline's coordinates are divided by (the controls' extent), for conditioning."""
    span = np.ptp(controls, axis=0).max() if len(controls) else 1.0
    return float(max(span, 1.0))


def landmark_flow(controls: Any, values: Any, support: np.ndarray, ramp_px: float, roi: Roi,
                  step: int = 8, smoothing: float = 1e-4) -> Any:
    """Backward flow (h, w, 2) over ``roi`` through (K, 2) controls with (K, 2) values.

    controls/values: frame pixels, NumPy arrays or torch tensors (the result
    follows their type and device). At ``controls[k]`` the flow is ``values[k]``
    (up to ``smoothing``). support: (P, 2) polygon in frame pixels; the flow is
    multiplied by a weight that is 1 from ``ramp_px`` inside the polygon's edge
    and falls smoothly to exactly 0 at the edge and outside it.
    """
    torch_path = is_torch(controls)
    if torch_path:
        ctrl = controls.detach().cpu().double().numpy()
        vals = values.detach().cpu().double().numpy()
    else:
        ctrl, vals = np.asarray(controls, np.float64), np.asarray(values, np.float64)
    # The fit is a (K+3)² solve for K ~ 200 points: always on the host, in float64.
    weights, affine = tps_weights(ctrl, vals, smoothing)
    scale = tps_scale(ctrl)
    x0, y0, x1, y1 = roi
    h, w = y1 - y0, x1 - x0
    gh, gw = -(-h // step), -(-w // step)
    # Nodes sit where an integer-factor bilinear upsample puts its samples (pixel centres).
    gx = x0 + (np.arange(gw) + 0.5) * step - 0.5
    gy = y0 + (np.arange(gh) + 0.5) * step - 0.5
    if torch_path:
        return _flow_torch(controls, weights, affine, scale, gx, gy, support, ramp_px, roi, step)
    # float32 is plenty for evaluating a fitted spline on a few thousand nodes, and twice as fast.
    nodes = (np.stack(np.meshgrid(gx, gy), -1).reshape(-1, 2) / scale).astype(np.float32)
    basis = _tps_kernel(_pairwise_sq(nodes, (ctrl / scale).astype(np.float32)))
    coarse = basis @ weights.astype(np.float32) + (affine[0] + nodes @ affine[1:]).astype(np.float32)
    coarse = coarse.reshape(gh, gw, 2)
    hard = fill_polygon(support, (gh * step, gw * step), (x0, y0))
    coarse *= _ramp(cv2.resize(hard, (gw, gh), interpolation=cv2.INTER_AREA), ramp_px, step)[..., None]
    flow = cv2.resize(coarse, (gw * step, gh * step), interpolation=cv2.INTER_LINEAR)
    flow *= hard[..., None]
    flow = flow[:h, :w]
    return flow


def warp_by_flow(image: Any, flow: Any, roi: Roi) -> Any:
    """The region ``roi`` of ``image`` resampled along a backward ``flow``.

    image: (H, W, 3) uint8 (NumPy, or a torch tensor on any device); flow:
    (h, w, 2) from ``landmark_flow`` for the same roi. Returns (h, w, 3) uint8.
    Where the flow is 0 the pixels are the input's exact bytes; the border is
    mirrored, so a face at the frame's edge does not pull in black.
    """
    x0, y0, x1, y1 = roi
    if is_torch(image):
        return _warp_torch(image, flow, roi)
    map_x = flow[..., 0] + np.arange(x0, x1, dtype=np.float32)
    map_y = flow[..., 1] + np.arange(y0, y1, dtype=np.float32)[:, None]
    return cv2.remap(image, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)


def _pairwise_sq(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * a).sum(1)[:, None] + (b * b).sum(1)[None] - 2.0 * a @ b.T


def _tps_kernel(r2: Any) -> Any:
    # U(r) = r² log r = ½ r² log r², taken as 0 at r = 0 (works on arrays and tensors).
    if is_torch(r2):
        r2 = r2.clip(min=0)
        return 0.5 * r2 * r2.clip(min=1e-20).log()
    r2 = np.maximum(r2, 1e-20, out=r2)
    return np.multiply(r2, np.log(r2), out=np.log(r2)) * 0.5


def _ramp(inside: Any, ramp_px: float, step: int) -> Any:
    # On the coarse grid (inside: the support's coverage of each node's cell):
    # erode by half the ramp, then a Gaussian whose 3σ is the other half, so the
    # weight is ~1 at ramp_px inside the edge and reaches 0 at the edge.
    return blur(erode(inside, ramp_px * 0.5 / step), ramp_px / 6.0 / step)


def _flow_torch(like: Any, weights: np.ndarray, affine: np.ndarray, scale: float, gx: np.ndarray,
                gy: np.ndarray, support: np.ndarray, ramp_px: float, roi: Roi, step: int) -> Any:
    import torch
    import torch.nn.functional as F

    dev = like.device
    x0, y0, x1, y1 = roi
    h, w = y1 - y0, x1 - x0
    gh, gw = len(gy), len(gx)
    ctrl = like.to(dev, torch.float64) / scale
    yy, xx = torch.meshgrid(torch.as_tensor(gy, device=dev), torch.as_tensor(gx, device=dev), indexing="ij")
    nodes = torch.stack([xx, yy], -1).reshape(-1, 2) / scale
    r2 = (nodes * nodes).sum(1)[:, None] + (ctrl * ctrl).sum(1)[None] - 2.0 * nodes @ ctrl.T
    aff = torch.as_tensor(affine, device=dev)
    coarse = _tps_kernel(r2) @ torch.as_tensor(weights, device=dev) + aff[0] + nodes @ aff[1:]
    coarse = coarse.reshape(gh, gw, 2).float()
    hard = fill_polygon(torch.as_tensor(np.asarray(support, np.float64)[:, :2], device=dev),
                        (gh * step, gw * step), (x0, y0))
    coarse = coarse * _ramp(F.avg_pool2d(hard[None, None], step)[0, 0], ramp_px, step)[..., None]
    # bilinear, align_corners=False: the same sample positions as cv2.resize's INTER_LINEAR
    flow = F.interpolate(coarse.permute(2, 0, 1)[None], scale_factor=step, mode="bilinear",
                         align_corners=False)[0].permute(1, 2, 0)
    return (flow * hard[..., None])[:h, :w]


def _warp_torch(image: Any, flow: Any, roi: Roi) -> Any:
    import torch
    import torch.nn.functional as F

    x0, y0, x1, y1 = roi
    big_h, big_w = image.shape[:2]
    dev = image.device
    xs = torch.arange(x0, x1, device=dev, dtype=torch.float32)
    ys = torch.arange(y0, y1, device=dev, dtype=torch.float32)
    sx = flow[..., 0] + xs
    sy = flow[..., 1] + ys[:, None]
    # align_corners=True maps -1..1 onto the first..last pixel centres, as remap counts them.
    grid = torch.stack([sx * (2.0 / max(big_w - 1, 1)) - 1.0, sy * (2.0 / max(big_h - 1, 1)) - 1.0], -1)
    src = image.permute(2, 0, 1)[None].float()
    out = F.grid_sample(src, grid[None], mode="bilinear", padding_mode="reflection", align_corners=True)
    return out[0].permute(1, 2, 0).add_(0.5).clamp_(0, 255).to(torch.uint8)


def grid_step(scale_px: float) -> int:
    """Coarse-grid spacing for a face ``scale_px`` pixels across its eyes: ~8 nodes per eye distance."""
    return max(2, int(math.floor(scale_px / 8.0)))
