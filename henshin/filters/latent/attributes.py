"""The attributes a local edit can move (``henshin directions channels --attribute``), torch-free.

Each is measured from a face's landmarks in eye distances, with the shapes of its region. The
command line's parser lists them, so this module imports no torch (``henshin.filters.latent.local``
does the sampling).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from henshin.kernels import landmarks as lm

LAYERS = (16, 32)  # the generator resolutions whose channels a local edit may use


def _dist(points: np.ndarray, a: int, b: int) -> float:
    return float(np.linalg.norm(points[a, :2] - points[b, :2]))


def eye_dist(points: np.ndarray) -> float:
    """The distance between the eyes' centres (the unit the attributes are measured in)."""
    left, right = lm.eye_centers(points)
    return max(float(np.linalg.norm(left - right)), 1e-6)


# attribute → (measure from landmarks in eye distances, shapes of its region)
ATTRIBUTES: dict[str, tuple[Callable[[np.ndarray], float], tuple[str, ...]]] = {
    "mouth_open": (lambda p: _dist(p, 13, 14) / eye_dist(p), ("lips_outer",)),
    "eyes_open": (
        lambda p: (_dist(p, 159, 145) + _dist(p, 386, 374)) / 2 / eye_dist(p),
        ("left_eye", "right_eye"),
    ),
    "brow_raise": (
        lambda p: (_dist(p, 105, 159) + _dist(p, 334, 386)) / 2 / eye_dist(p),
        ("left_brow", "right_brow", "left_eye", "right_eye"),
    ),
    "nose_width": (lambda p: _dist(p, 64, 294) / eye_dist(p), ("nose",)),
}
