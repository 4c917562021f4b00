"""Soft masks from polygons: fill, erode, feather."""

from __future__ import annotations

import cv2
import numpy as np


def polygon_mask(polygon: np.ndarray, shape: tuple[int, int], offset: tuple[float, float] = (0, 0)) -> np.ndarray:
    """A hard (H, W) float32 mask, 1 inside the polygon (points (K, 2) in frame pixels).

    ``offset`` is the frame position of the mask's top-left pixel. Drawn with
    4-bit sub-pixel precision so slow motion does not step a whole pixel at a time.
    """
    shift = 4
    pts = np.round((polygon[:, :2] - np.asarray(offset)) * (1 << shift)).astype(np.int32)
    mask = np.zeros(shape, np.uint8)
    cv2.fillPoly(mask, [pts], 255, lineType=cv2.LINE_AA, shift=shift)
    return mask.astype(np.float32) * (1.0 / 255.0)


def feather(mask: np.ndarray, erode_px: float, blur_px: float) -> np.ndarray:
    """Shrink a mask by ``erode_px`` and soften its edge over about ``blur_px`` pixels.

    The blur is a Gaussian with sigma = blur_px / 3, so the ramp is about blur_px
    wide on each side of the eroded edge; nothing is added beyond 3 sigma.
    """
    out = mask
    radius = int(round(erode_px))
    if radius > 0:
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
        out = cv2.erode(out, kernel)
    if blur_px > 0:
        sigma = blur_px / 3.0
        k = 2 * int(np.ceil(3 * sigma)) + 1
        out = cv2.GaussianBlur(out, (k, k), sigma, borderType=cv2.BORDER_CONSTANT)
    return out
