"""Measures of output quality over time that the tests and the bench share.

Flicker is the mean absolute second temporal difference of the frames,
``|f[t+1] − 2·f[t] + f[t−1]|``, in 8-bit levels. Motion at a steady speed adds
little to it; frame-to-frame jitter (landmark noise, a filter that is not stable
over time) adds a lot. A filter is temporally stable when its output's flicker
does not rise above its input's.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np


def flicker(frames: Iterable[np.ndarray], mask: np.ndarray | None = None) -> float:
    """Mean |second temporal difference| over ``frames`` ((H, W, C) uint8), inside ``mask`` if given.

    mask: (H, W) weights in [0, 1] (a region of interest such as the face area).
    Returns 0.0 for fewer than three frames.
    """
    prev2: np.ndarray | None = None
    prev1: np.ndarray | None = None
    total, count = 0.0, 0
    weights = None if mask is None else np.asarray(mask, np.float32)[..., None]
    for frame in frames:
        cur = np.asarray(frame, np.float32)
        if prev2 is not None and prev1 is not None:
            diff = np.abs(cur - 2.0 * prev1 + prev2)
            if weights is None:
                total += float(diff.mean())
            else:
                total += float((diff * weights).sum() / max(weights.sum() * diff.shape[-1], 1e-6))
            count += 1
        prev2, prev1 = prev1, cur
    return total / count if count else 0.0
