"""Affine warps between a frame and square crops, named after the frames they connect."""

from __future__ import annotations

import cv2
import numpy as np


def crop_from_frame(image: np.ndarray, matrices: np.ndarray, size: int) -> np.ndarray:
    """Cut aligned crops out of a frame.

    image: (H, W, 3) uint8 RGB. matrices: (N, 2, 3) frame→crop affines.
    Returns (N, 3, size, size) float32 in [-1, 1]; outside the frame is mirrored,
    so a face at the border does not get a black band fed to the network.
    """
    out = np.empty((len(matrices), 3, size, size), np.float32)
    for n, matrix in enumerate(matrices):
        crop = cv2.warpAffine(
            image, matrix, (size, size), flags=cv2.INTER_AREA if _shrinks(matrix) else cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_REFLECT_101,
        )
        out[n] = crop.transpose(2, 0, 1)
    out *= 2.0 / 255.0
    out -= 1.0
    return out


def to_uint8_image(crop: np.ndarray) -> np.ndarray:
    """(3, S, S) float in [-1, 1] → (S, S, 3) uint8 RGB."""
    return np.clip((crop.transpose(1, 2, 0) + 1.0) * 127.5 + 0.5, 0, 255).astype(np.uint8)


def to_unit_tensor(image: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 RGB → (1, 3, H, W) float32 in [-1, 1]."""
    return (image.transpose(2, 0, 1)[None].astype(np.float32) * (2.0 / 255.0)) - 1.0


def frame_from_crop(
    crop: np.ndarray, matrix: np.ndarray, roi: tuple[int, int, int, int]
) -> np.ndarray:
    """Warp a crop back into a region of the frame.

    crop: (S', S', C) image of any dtype; matrix: the frame→crop affine at the
    size the crop was taken (S); the crop may come back at another size S'.
    roi: (x0, y0, x1, y1) of the frame to fill. Returns (y1-y0, x1-x0, C) float32.
    """
    x0, y0, x1, y1 = roi
    to_roi = roi_matrix(matrix, x0, y0)
    return cv2.warpAffine(
        crop.astype(np.float32, copy=False), to_roi, (x1 - x0, y1 - y0),
        flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REPLICATE,
    )


def roi_matrix(matrix: np.ndarray, x0: float, y0: float) -> np.ndarray:
    """The frame→crop affine re-expressed for coordinates relative to (x0, y0)."""
    out = matrix.astype(np.float64).copy()
    out[:, 2] += out[:, :2] @ np.array([x0, y0], np.float64)
    return out


def scale_matrix(matrix: np.ndarray, factor: float) -> np.ndarray:
    """The affine to a crop ``factor`` times as large."""
    return matrix * factor


def quad_roi(matrix: np.ndarray, size: int, shape: tuple[int, int]) -> tuple[int, int, int, int] | None:
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


def _shrinks(matrix: np.ndarray) -> bool:
    return abs(np.linalg.det(matrix[:, :2])) < 1.0
