"""Putting filtered faces back: inverse warp, feathered face mask, colour match, blend."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from henshin.filters.base import FacePatch, check_range
from henshin.kernels.blend import blend_into, match_colour
from henshin.kernels.landmarks import FACE_OVAL
from henshin.kernels.masks import feather, polygon_mask
from henshin.kernels.regions import region_mask
from henshin.kernels.warp import frame_from_crop, quad_roi, scale_matrix
from henshin.types import AlignedFace


@dataclass(frozen=True)
class CompositeParams:
    """feather: width of the soft mask edge; erode: how far the mask is pulled in
    from the face oval (both as a fraction of the face's width); color_match:
    0..1, how far the filtered face's colours are moved to the original's;
    region: where the filtered face is used: the whole face oval, or one region
    from the landmarks (skin, lips, ...), whose soft edge is a quarter of
    ``feather`` wide since features are small (``erode`` does not apply)."""

    feather: float = 0.08
    erode: float = 0.03
    color_match: float = 0.0
    region: Literal["oval", "skin", "lips", "inner_mouth", "eyes", "irises", "brows"] = "oval"

    def __post_init__(self) -> None:
        check_range("feather", self.feather, 0.0, 1.0)
        check_range("erode", self.erode, 0.0, 0.5)
        check_range("color_match", self.color_match, 0.0, 1.0)


def face_mask(face: AlignedFace, roi: tuple[int, int, int, int], params: CompositeParams) -> np.ndarray:
    """Soft (h, w) float32 mask of the face oval inside ``roi``, eroded and feathered.

    With a ``region`` other than the oval: that region's soft mask, from the
    smoothed landmarks.
    """
    x0, y0, x1, y1 = roi
    width = math.hypot(face.quad[2], face.quad[3])  # half the FFHQ square ≈ the face's width
    if params.region != "oval":
        return region_mask(face.landmarks, params.region, roi, max(0.25 * params.feather * width, 0.5))
    hard = polygon_mask(face.face.landmarks[list(FACE_OVAL)], (y1 - y0, x1 - x0), (x0, y0))
    # Erode by the feather width too, so the soft edge ends inside the oval:
    # nothing outside the face oval ever changes.
    return feather(hard, (params.erode + params.feather) * width, params.feather * width)


def composite(image: np.ndarray, faces: list[AlignedFace], filtered: np.ndarray,
              crop_size: int, params: CompositeParams, opacity: float = 1.0) -> np.ndarray:
    """A new frame with each filtered crop blended into ``image`` inside its face mask.

    image: (H, W, 3) uint8 RGB; filtered: (N, 3, S', S') float32 in [-1, 1],
    taken from crops of side ``crop_size``; ``opacity`` scales every mask. Pixels
    outside every mask (and every pixel at opacity 0) keep their exact bytes.
    """
    out = image.copy()
    if opacity <= 0:
        return out
    for face, crop in zip(faces, filtered, strict=True):
        roi = quad_roi(face.matrix, crop_size, image.shape[:2])
        if roi is None:
            continue
        matrix = scale_matrix(face.matrix, crop.shape[-1] / crop_size)
        pixels = (crop.transpose(1, 2, 0) + 1.0) * 127.5
        warped = frame_from_crop(pixels, matrix, roi)
        alpha = face_mask(face, roi, params)
        if opacity < 1:
            alpha *= opacity
        x0, y0, x1, y1 = roi
        target = out[y0:y1, x0:x1]
        if params.color_match > 0:
            warped = match_colour(warped, target.astype(np.float32), alpha, params.color_match)
        blend_into(target, warped, alpha)
    return out


def paste_patches(image: np.ndarray, patches: Sequence[FacePatch], opacity: float = 1.0) -> np.ndarray:
    """A new frame with each landmark filter's patch blended into ``image`` inside its own mask.

    Pixels where every mask is 0 (and every pixel at opacity 0) keep their exact bytes.
    """
    out = image.copy()
    if opacity <= 0:
        return out
    for patch in patches:
        x0, y0, x1, y1 = patch.roi
        alpha = patch.mask if opacity >= 1 else patch.mask * opacity
        blend_into(out[y0:y1, x0:x1], np.asarray(patch.pixels, np.float32), alpha)
    return out
