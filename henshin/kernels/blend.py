"""Alpha blending and colour matching inside a mask."""

from __future__ import annotations

import numpy as np


def blend_into(dst: np.ndarray, src: np.ndarray, alpha: np.ndarray) -> None:
    """dst ← dst + (src − dst)·alpha, in place, rounded to uint8.

    dst: (H, W, 3) uint8 view into the frame; src: (H, W, 3) float32 0..255;
    alpha: (H, W) float32 in [0, 1]. Where alpha is 0, dst keeps its exact bytes.
    """
    touched = alpha > 0
    if not touched.any():
        return
    base = dst.astype(np.float32)
    mixed = base + (src - base) * alpha[..., None]
    np.clip(mixed, 0, 255, out=mixed)
    mixed += 0.5
    dst[touched] = mixed[touched].astype(np.uint8)


def match_colour(src: np.ndarray, ref: np.ndarray, weight: np.ndarray, amount: float = 1.0) -> np.ndarray:
    """Shift ``src``'s per-channel mean and spread towards ``ref``'s inside ``weight``.

    Reinhard et al. 2001 colour transfer (per channel, weighted statistics), in RGB.
    src, ref: (H, W, 3) float32 0..255; weight: (H, W) float32. Returns a new array.
    """
    w = weight[..., None]
    total = float(weight.sum())
    if total < 1.0 or amount <= 0:
        return src
    mean_s = (src * w).sum((0, 1)) / total
    mean_r = (ref * w).sum((0, 1)) / total
    std_s = np.sqrt(((src - mean_s) ** 2 * w).sum((0, 1)) / total) + 1e-3
    std_r = np.sqrt(((ref - mean_r) ** 2 * w).sum((0, 1)) / total) + 1e-3
    matched = (src - mean_s) * (std_r / std_s) + mean_r
    return src + (matched - src) * amount
