"""Affine warps between a frame and square crops, named after the frames they connect.

Convention: frames are (H, W, 3) uint8 RGB; a batch is float32 in a filter's
``value_range`` (lo, hi), laid out NCHW or NHWC. Matrices are 2×3 affines from
frame pixels to crop pixels (``crop_from_frame``), pixel centres at integer
coordinates as OpenCV counts them. Every kernel takes NumPy arrays (OpenCV path)
or torch tensors (torch path, on the tensor's device) behind one signature;
the result follows the input.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from henshin.kernels.masks import is_torch

Roi = tuple[int, int, int, int]


def crop_from_frame(image: Any, matrices: np.ndarray, size: int, value_range: tuple[float, float] = (-1.0, 1.0),
                    layout: str = "NCHW") -> Any:
    """Cut aligned square crops out of a frame, straight into a filter's range and layout.

    image: (H, W, 3) uint8. matrices: (N, 2, 3) frame→crop affines. Returns
    (N, 3, size, size) (NCHW) or (N, size, size, 3) float32 in ``value_range``.
    Outside the frame is mirrored, so a face at the border does not feed the
    network a black band.
    """
    lo, hi = value_range
    if is_torch(image):
        return _crop_torch(image, matrices, size, lo, hi, layout)
    crops = np.empty((len(matrices), size, size, 3), np.uint8)
    for n, matrix in enumerate(matrices):
        flags = cv2.INTER_AREA if _shrinks(matrix) else cv2.INTER_LINEAR
        cv2.warpAffine(image, matrix, (size, size), dst=crops[n], flags=flags, borderMode=cv2.BORDER_REFLECT_101)
    return _to_range(crops if layout == "NHWC" else crops.transpose(0, 3, 1, 2), lo, hi)


def frame_to_batch(image: Any, value_range: tuple[float, float] = (-1.0, 1.0), layout: str = "NCHW") -> Any:
    """A whole (H, W, 3) uint8 frame as a batch of one in ``value_range`` and ``layout``."""
    lo, hi = value_range
    if is_torch(image):
        x = image[None] if layout == "NHWC" else image.permute(2, 0, 1)[None]
        return x.float().mul_((hi - lo) / 255.0).add_(lo).contiguous()
    return _to_range(image[None] if layout == "NHWC" else image.transpose(2, 0, 1)[None], lo, hi)


def batch_to_image(item: Any, value_range: tuple[float, float] = (-1.0, 1.0), layout: str = "NCHW") -> Any:
    """One batch item (3, H, W) or (H, W, 3) in ``value_range`` back to an (H, W, 3) uint8 image."""
    lo, hi = value_range
    scale = 255.0 / (hi - lo)
    if is_torch(item):
        import torch

        hwc = item if layout == "NHWC" else item.permute(1, 2, 0)
        return ((hwc.float() - lo) * scale + 0.5).clamp_(0, 255).to(torch.uint8)
    hwc = item if layout == "NHWC" else item.transpose(1, 2, 0)
    out = (hwc - lo) * scale
    out += 0.5
    np.clip(out, 0, 255, out=out)
    return out.astype(np.uint8)


def batch_to_pixels(item: Any, value_range: tuple[float, float], layout: str = "NCHW") -> Any:
    """One batch item as (H, W, 3) float32 0..255, unrounded (what pasting back warps)."""
    lo, hi = value_range
    if is_torch(item):
        hwc = item if layout == "NHWC" else item.permute(1, 2, 0)
        return (hwc.float() - lo) * (255.0 / (hi - lo))
    hwc = item if layout == "NHWC" else item.transpose(1, 2, 0)
    out = np.subtract(hwc, lo, dtype=np.float32)
    out *= 255.0 / (hi - lo)
    return out


def convert_range(batch: Any, src: tuple[float, float], dst: tuple[float, float]) -> Any:
    """A batch mapped linearly from one value range to another (a no-op when they agree)."""
    if tuple(src) == tuple(dst):
        return batch
    scale = (dst[1] - dst[0]) / (src[1] - src[0])
    return (batch - src[0]) * scale + dst[0]


def frame_from_crop(crop: Any, matrix: np.ndarray, roi: Roi) -> Any:
    """Warp a crop back into a region of the frame.

    crop: (S', S', C) float image (NumPy or torch); matrix: the frame→crop affine
    at the crop's own size S'; roi: (x0, y0, x1, y1) of the frame to fill.
    Returns (y1-y0, x1-x0, C) float32, edges replicated.
    """
    x0, y0, x1, y1 = roi
    if is_torch(crop):
        return _paste_torch(crop, matrix, roi)
    return cv2.warpAffine(np.ascontiguousarray(crop, np.float32), roi_matrix(matrix, x0, y0), (x1 - x0, y1 - y0),
                          flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REPLICATE)


def roi_matrix(matrix: np.ndarray, x0: float, y0: float) -> np.ndarray:
    """The frame→crop affine re-expressed for coordinates relative to (x0, y0)."""
    out = matrix.astype(np.float64).copy()
    out[:, 2] += out[:, :2] @ np.array([x0, y0], np.float64)
    return out


def scale_matrix(matrix: np.ndarray, factor: float) -> np.ndarray:
    """The affine to a crop ``factor`` times as large."""
    return matrix * factor


def quad_roi(matrix: np.ndarray, size: int, shape: tuple[int, int]) -> Roi | None:
    """Bounding box in the frame of a size×size crop, clipped to the frame; None if outside."""
    inverse = cv2.invertAffineTransform(matrix)
    corners = np.array([[0, 0, 1], [size, 0, 1], [0, size, 1], [size, size, 1]], np.float64)
    xy = corners @ inverse.T
    h, w = shape
    x0, y0 = np.floor(xy.min(0)).astype(int)
    x1, y1 = np.ceil(xy.max(0)).astype(int)
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
    if x1 <= x0 or y1 <= y0:
        return None
    return int(x0), int(y0), int(x1), int(y1)


def _to_range(pixels: np.ndarray, lo: float, hi: float) -> np.ndarray:
    # One pass: uint8 → float32 scaled and shifted (a copy in the target layout).
    out = np.multiply(pixels, np.float32((hi - lo) / 255.0), dtype=np.float32)
    if lo:
        out += np.float32(lo)
    return out


def _shrinks(matrix: np.ndarray) -> bool:
    return abs(np.linalg.det(matrix[:, :2])) < 1.0


def _sample_grid(matrix: np.ndarray, out_h: int, out_w: int, offset: tuple[float, float], src_h: int, src_w: int,
                 device: Any) -> Any:
    """grid_sample coordinates (1, out_h, out_w, 2) for ``src = matrix · (dst + offset)``, align_corners=True."""
    import torch

    m = torch.as_tensor(np.asarray(matrix, np.float64), device=device)
    xs = torch.arange(out_w, device=device, dtype=torch.float64) + offset[0]
    ys = torch.arange(out_h, device=device, dtype=torch.float64) + offset[1]
    sx = m[0, 0] * xs[None] + m[0, 1] * ys[:, None] + m[0, 2]
    sy = m[1, 0] * xs[None] + m[1, 1] * ys[:, None] + m[1, 2]
    # align_corners=True maps -1..1 onto the first..last pixel centres, as OpenCV counts them.
    grid = torch.stack([sx * (2.0 / max(src_w - 1, 1)) - 1.0, sy * (2.0 / max(src_h - 1, 1)) - 1.0], -1)
    return grid.float()[None]


def _crop_torch(image: Any, matrices: np.ndarray, size: int, lo: float, hi: float, layout: str) -> Any:
    import torch
    import torch.nn.functional as F

    h, w = image.shape[:2]
    src = image.permute(2, 0, 1)[None].float()
    grids = torch.cat([_sample_grid(cv2.invertAffineTransform(m), size, size, (0.0, 0.0), h, w, image.device)
                       for m in matrices]) if len(matrices) else torch.empty((0, size, size, 2), device=image.device)
    out = F.grid_sample(src.expand(len(matrices), -1, -1, -1), grids, mode="bilinear", padding_mode="reflection",
                        align_corners=True)
    out = out.mul_((hi - lo) / 255.0).add_(lo)
    return out.permute(0, 2, 3, 1).contiguous() if layout == "NHWC" else out


def _paste_torch(crop: Any, matrix: np.ndarray, roi: Roi) -> Any:
    import torch.nn.functional as F

    x0, y0, x1, y1 = roi
    size_h, size_w = crop.shape[:2]
    grid = _sample_grid(matrix, y1 - y0, x1 - x0, (float(x0), float(y0)), size_h, size_w, crop.device)
    out = F.grid_sample(crop.permute(2, 0, 1)[None].float(), grid, mode="bilinear", padding_mode="border",
                        align_corners=True)
    return out[0].permute(1, 2, 0)
