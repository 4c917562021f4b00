"""Recolour one semantic region of each face: lip tint, iris colour, skin-tone evening.

The region (lips, inner mouth, eyes, irises, brows, skin, oval, beard) is a soft mask
built from the smoothed landmarks at frame resolution; inside it each pixel
takes the target colour scaled by its own brightness relative to the region's
mean, so lips keep their highlights and irises their pupils. ``color=auto``
uses the region's own mean colour: on skin that evens out redness and blotches
while keeping light and shadow.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from henshin.errors import OptionError
from henshin.filters.base import LandmarkFilter, check_range, register
from henshin.filters.geometry.warp import face_axes
from henshin.kernels.color import chroma_gate, recolor
from henshin.kernels.regions import region_box, region_mask
from henshin.types import FaceContext, FacePatch

Region = Literal["lips", "inner_mouth", "eyes", "irises", "brows", "skin", "oval", "beard"]
_HEX = re.compile(r"#?([0-9a-fA-F]{6})")


def parse_color(text: str) -> tuple[float, float, float] | None:
    """``#rrggbb`` (or ``rrggbb``) → RGB 0..255; ``auto`` → None; anything else is an OptionError."""
    if text.lower() == "auto":
        return None
    match = _HEX.fullmatch(text.strip())
    if match is None:
        raise OptionError(f"parameter color expects #rrggbb (like #b03050) or auto, got {text!r}.")
    value = match.group(1)
    return float(int(value[0:2], 16)), float(int(value[2:4], 16)), float(int(value[4:6], 16))


@dataclass(frozen=True)
class TintParams:
    """region: which part of the face; color: #rrggbb, or auto for the region's own
    mean colour (evens skin tone); strength: 0 keeps the input, 1 the full colour;
    feather: soft edge width in eye distances."""

    region: Region = "lips"
    color: str = "#b03050"
    strength: float = 0.6
    feather: float = 0.03

    def __post_init__(self) -> None:
        check_range("strength", self.strength, 0.0, 1.0)
        check_range("feather", self.feather, 0.0, 0.5)
        parse_color(self.color)


def tint_face(image: np.ndarray, points: np.ndarray, region: str, color: tuple[float, float, float] | None,
              strength: float, feather: float) -> FacePatch | None:
    """One face's recoloured region as a patch, or None when it is off-frame or empty."""
    eye_dist, _, _ = face_axes(np.asarray(points[:, :2], np.float64))
    feather_px = max(feather * eye_dist, 0.5)
    roi = region_box(points, region, feather_px, image.shape[:2])
    if roi is None:
        return None
    x0, y0, x1, y1 = roi
    mask = region_mask(points, region, roi, feather_px)
    if not mask.any():
        return None
    source = image[y0:y1, x0:x1]
    if region == "skin":  # hair over the forehead is inside the oval but not skin
        mask *= chroma_gate(source, mask)
    pixels = recolor(source, mask, color)
    mask *= strength
    return FacePatch(roi, pixels, mask)


@register
class TintFilter(LandmarkFilter):
    """Recolour a face region (lip tint, iris colour, skin-tone evening)."""

    name = "tint"
    Params = TintParams

    def __init__(self, params: TintParams, runtime: Any = None, weights: Any = None) -> None:
        super().__init__(params, runtime, weights)
        self._color = parse_color(params.color)

    def set_params(self, **changes: str) -> None:
        super().set_params(**changes)
        self._color = parse_color(self.params.color)

    def edit(self, image: np.ndarray, faces: Sequence[FaceContext]) -> list[FacePatch]:
        if self.params.strength == 0:
            return []
        p = self.params
        patches = (tint_face(image, face.landmarks, p.region, self._color, p.strength, p.feather) for face in faces)
        return [patch for patch in patches if patch is not None]
