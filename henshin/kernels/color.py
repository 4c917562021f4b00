"""Recolouring inside a region, keeping the shading; moving colour statistics between faces in Lab."""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from henshin.kernels.masks import is_torch

# ITU-R BT.601 luma weights.
_LUMA = (0.299, 0.587, 0.114)


def recolor(pixels: Any, weight: Any, color: Any = None) -> Any:
    """``pixels`` recoloured to ``color`` with their shading kept: ``color · Y / mean(Y)``.

    pixels: (h, w, 3) uint8 or float 0..255 RGB, a NumPy array or a torch tensor;
    weight: (h, w) region mask, for the region's mean luma (and mean colour);
    color: (3,) RGB 0..255, or None for the region's own mean colour, which
    evens out blotches and redness while keeping light and shadow.
    A pixel of the region's mean brightness becomes exactly ``color``.
    Returns (h, w, 3) float32 0..255 (same library and device as ``pixels``).
    """
    if is_torch(pixels):
        import torch

        rgb = pixels.float()
        w = weight.float()
        luma = rgb @ rgb.new_tensor(_LUMA)
        total = w.sum().clamp_min(1e-6)
        mean_luma = (luma * w).sum() / total
        target = (rgb * w[..., None]).sum((0, 1)) / total if color is None else rgb.new_tensor(color)
        return (target * (luma / mean_luma.clamp_min(1.0))[..., None]).clamp(0, 255).to(torch.float32)
    rgb = np.asarray(pixels, np.float32)
    w = np.asarray(weight, np.float32)
    luma = rgb @ np.asarray(_LUMA, np.float32)
    total = max(float(w.sum()), 1e-6)
    mean_luma = max(float((luma * w).sum()) / total, 1.0)
    target = (rgb * w[..., None]).sum((0, 1)) / total if color is None else np.asarray(color, np.float32)
    out = target.astype(np.float32) * (luma * (1.0 / mean_luma))[..., None]
    return np.clip(out, 0, 255, out=out)


def chroma_gate(pixels: Any, weight: Any, tolerance: float = 10.0) -> Any:
    """(h, w) float32 in (0, 1]: how close each pixel's chroma is to the region's typical chroma.

    A landmark region cannot see hair over a forehead or a hand over a cheek;
    their colour gives them away. The typical colour (BT.601 Cb, Cr, and luma at
    a fifth of the weight) is the masked mean, re-estimated once with the
    far-off pixels down-weighted; ``tolerance`` is the Gaussian's width in 8-bit levels.
    """
    torch_path = is_torch(pixels)
    rgb = pixels.float() if torch_path else np.asarray(pixels, np.float32)
    w = weight.float() if torch_path else np.asarray(weight, np.float32)
    luma = rgb[..., 0] * _LUMA[0] + rgb[..., 1] * _LUMA[1] + rgb[..., 2] * _LUMA[2]
    cb, cr = (rgb[..., 2] - luma) * (1 / 1.772), (rgb[..., 0] - luma) * (1 / 1.402)
    close = w
    for _ in range(2):
        total = float(close.sum()) + 1e-6
        d2 = (cb - float((cb * close).sum()) / total) ** 2 + (cr - float((cr * close).sum()) / total) ** 2
        # Brightness counts a fifth as much: shading is still skin, dark brown hair is not.
        d2 = d2 + (0.2 * (luma - float((luma * close).sum()) / total)) ** 2
        gate = ((-0.5 / tolerance**2) * d2).exp() if torch_path else np.exp((-0.5 / tolerance**2) * d2)
        close = w * gate
    return gate


# -- Lab statistics transfer (Reinhard et al. 2001, "Color Transfer between Images") ---------------

MIN_SPREAD = 1.0  # 8-bit Lab levels: a flat sample set must not blow the scale up
SPREAD_RATIO = (0.5, 2.0)  # a harmonised spread stays within this factor of the source's


def lab_stats(samples: np.ndarray) -> np.ndarray:
    """(2, 3) mean and standard deviation of (N, 3) uint8 RGB samples in OpenCV's 8-bit Lab."""
    lab = cv2.cvtColor(np.ascontiguousarray(samples, np.uint8).reshape(-1, 1, 3), cv2.COLOR_RGB2LAB)
    lab = lab.reshape(-1, 3).astype(np.float64)
    return np.stack([lab.mean(0), np.maximum(lab.std(0), MIN_SPREAD)])


def lab_transfer_table(source: np.ndarray, target: np.ndarray, amount: float = 1.0) -> np.ndarray | None:
    """A (1, 256, 3) uint8 lookup table per Lab channel taking ``source`` stats to ``target`` stats
    (mean and spread, ``amount`` of the way); None when it changes nothing."""
    levels = np.arange(256, dtype=np.float64)[:, None]
    ratio = np.clip(target[1] / source[1], *SPREAD_RATIO)
    moved = (levels - source[0]) * ratio + target[0]
    table = np.clip(np.rint(levels + amount * (moved - levels)), 0, 255).astype(np.uint8)
    if (table == np.arange(256)[:, None]).all():
        return None
    return table[None]


def apply_lab_table(pixels: np.ndarray, table: np.ndarray) -> np.ndarray:
    """(h, w, 3) uint8 RGB with each Lab channel passed through ``table`` (from ``lab_transfer_table``)."""
    lab = cv2.cvtColor(pixels, cv2.COLOR_RGB2LAB)
    return cv2.cvtColor(cv2.LUT(lab, table), cv2.COLOR_LAB2RGB)
