"""Alpha blending and colour matching inside a mask.

Convention: ``dst`` is a (h, w, 3) uint8 view into the frame (NumPy) or a uint8
tensor; ``src`` is (h, w, 3) float32 0..255; ``alpha`` is (h, w) float32 in
[0, 1]. Where alpha is 0 the frame keeps its exact bytes. Each kernel takes
NumPy arrays or torch tensors behind one signature.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from henshin.kernels.masks import is_torch

STATS_STEP = 4  # colour statistics from every 4th pixel in each direction: 1/16 of the work, same means


def blend_into(dst: Any, src: Any, alpha: Any) -> None:
    """dst ← round(dst + (src − dst)·alpha), in place.

    Computed over the whole region with no boolean indexing: where alpha is 0
    the sum is dst + 0.5 exactly, which rounds back to dst's own byte.
    """
    if is_torch(dst):
        base = dst.float()
        mixed = (src - base).mul_(alpha[..., None]).add_(base).add_(0.5).clamp_(0, 255)
        dst.copy_(mixed.to(dst.dtype))
        return
    base = dst.astype(np.float32)
    mixed = np.subtract(src, base, dtype=np.float32)
    mixed *= alpha[..., None]
    mixed += base
    mixed += 0.5
    np.clip(mixed, 0, 255, out=mixed)
    np.copyto(dst, mixed, casting="unsafe")


def match_colour(src: Any, ref: Any, weight: Any, amount: float = 1.0) -> Any:
    """Shift ``src``'s per-channel mean and spread towards ``ref``'s inside ``weight``.

    Reinhard et al. 2001 colour transfer (per channel, weighted statistics), in RGB.
    src, ref: (h, w, 3) float 0..255; weight: (h, w). The statistics are taken on
    every ``STATS_STEP``-th pixel (means and spreads of a smooth region barely
    change); the shift is applied to every pixel. Returns a new array.
    """
    s, r, w = src[::STATS_STEP, ::STATS_STEP], ref[::STATS_STEP, ::STATS_STEP], weight[::STATS_STEP, ::STATS_STEP]
    total = float(w.sum())
    if total < 1.0 or amount <= 0:
        return src
    w3 = w[..., None]
    mean_s = (s * w3).sum((0, 1)) / total
    mean_r = (r * w3).sum((0, 1)) / total
    std_s = (((s - mean_s) ** 2 * w3).sum((0, 1)) / total) ** 0.5 + 1e-3
    std_r = (((r - mean_r) ** 2 * w3).sum((0, 1)) / total) ** 0.5 + 1e-3
    # matched = (src − mean_s)·gain + mean_r, mixed with src by ``amount``: one affine per channel.
    gain = 1.0 + (std_r / std_s - 1.0) * amount
    shift = (mean_r - mean_s * std_r / std_s) * amount
    return src * gain + shift
