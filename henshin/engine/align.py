"""FFHQ-style face alignment: the oriented square of a face and its crop matrix.

The oriented square follows the FFHQ dataset's alignment (Karras et al. 2019,
``recreate_aligned_images`` in NVlabs/ffhq-dataset): from the eye centres and
the mouth corners, a centre ``c`` and a half-side vector ``x`` along the crop's
horizontal axis; the vertical half-side is ``x`` turned by 90°. Smoothing
(``henshin.engine.smoothing``) works on those four numbers (cx, cy, ax, ay), so
the square never shears. The geometry itself lives in ``henshin.kernels.ffhq`` (filters
that align a still picture use it too); it is re-exported here.
"""

from __future__ import annotations

import numpy as np

from henshin.kernels.ffhq import ffhq_quad, quad_matrix
from henshin.types import AlignedFace, FilterSpec

__all__ = ["box_quad", "crop_matrix", "ffhq_quad", "quad_matrix"]


def box_quad(landmarks: np.ndarray, scale: float) -> np.ndarray:
    """(cx, cy, half, 0): the upright square ``scale`` times the landmarks' box (its longer side), centred on it."""
    xy = np.asarray(landmarks[:, :2], np.float64)
    (x0, y0), (x1, y1) = xy.min(0), xy.max(0)
    half = 0.5 * scale * max(x1 - x0, y1 - y0)
    return np.array([(x0 + x1) / 2, (y0 + y1) / 2, half, 0.0])


def crop_matrix(face: AlignedFace, spec: FilterSpec) -> np.ndarray:
    """The frame→crop affine of a face for a filter: the FFHQ square, or the upright box the spec asks for."""
    quad = face.quad if spec.crop == "aligned" else box_quad(face.landmarks, spec.box_scale)
    return quad_matrix(quad, spec.size)
