"""Putting filtered faces back: inverse warp, feathered mask, colour match, blend.

Each filtered crop is warped back into its face's box with the inverse of the
matrix it was cut with and blended in inside a mask built from the *smoothed*
landmarks (the same ones the crop followed): the whole visible face (the oval
pulled in and feathered, but never off a feature or short of a turned face's far
side), one face region, or — for a filter that changes the face's outline
(spec ``mask="crop"``) — the whole crop inside a feathered border. Pixels
outside every mask keep their exact bytes. The same code runs on NumPy frames
and on torch tensors on the filter's device.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from henshin.engine.align import crop_matrix
from henshin.filters.base import check_range
from henshin.kernels.blend import blend_into, match_colour
from henshin.kernels.masks import feather_mask, is_torch
from henshin.kernels.outline import covering_oval, features_hull
from henshin.kernels.regions import region_mask
from henshin.kernels.warp import batch_to_pixels, frame_from_crop, quad_roi, scale_matrix
from henshin.types import AlignedFace, FacePatch, FilterSpec

MASK_REUSE_PX = 0.05  # a face whose landmarks moved less than this (max over points) reuses its mask


@dataclass(frozen=True)
class CompositeParams:
    """feather: width of the soft mask edge; erode: how far the mask is pulled in
    from the face oval; margin: how far beyond every feature the mesh found (eyes,
    brows, nose, lips) the mask stays fully on, whatever the oval does (all three
    as a fraction of the face's width); color_match: 0..1, how far the filtered
    face's colours are moved to the original's; region: where the filtered face
    is used: the whole face, or one region from the landmarks (skin, lips, ...),
    whose soft edge is a quarter of ``feather`` wide since features are small
    (``erode`` and ``margin`` do not apply)."""

    feather: float = 0.08
    erode: float = 0.03
    margin: float = 0.04
    color_match: float = 0.0
    region: Literal["oval", "skin", "lips", "inner_mouth", "eyes", "irises", "brows", "beard"] = "oval"

    def __post_init__(self) -> None:
        check_range("feather", self.feather, 0.0, 1.0)
        check_range("erode", self.erode, 0.0, 0.5)
        check_range("margin", self.margin, 0.0, 0.5)
        check_range("color_match", self.color_match, 0.0, 1.0)


def face_width(face: AlignedFace) -> float:
    """Half the FFHQ square's side: about the face's width in pixels."""
    return math.hypot(face.quad[2], face.quad[3])


def face_mask(face: AlignedFace, roi: tuple[int, int, int, int], params: CompositeParams, device: Any = None) -> Any:
    """Soft (h, w) float32 mask of the whole visible face inside ``roi``; built from the smoothed landmarks.

    The larger of two masks: the face oval, its far side pushed out to a turned
    head's silhouette (``kernels.outline.covering_oval``), with a ramp from
    ``erode`` face widths inside its edge to 1 two ``feather`` widths further in;
    and the convex hull of the features, fully on up to ``margin`` face widths
    beyond it and feathered over one ``feather`` width outside that. So a
    feature the mesh found is never cut, even where the oval runs through it,
    and a frontal face changes nothing outside its oval. With a ``region``
    other than the oval: that region's soft mask. ``device``: None for NumPy,
    else a torch device.
    """
    width = face_width(face)
    if params.region != "oval":
        points = face.landmarks
        if device is not None:
            import torch

            points = torch.as_tensor(np.asarray(points, np.float32), device=device)
        return region_mask(points, params.region, roi, max(0.25 * params.feather * width, 0.5))
    inner, ramp = params.erode * width, 2 * params.feather * width
    oval = feather_mask(covering_oval(face.landmarks, inner + ramp), roi, inner, inner + ramp, device)
    # The features' mask only where it can be above 0: its own box, not the whole crop's.
    hull, reach = features_hull(face.landmarks), params.margin * width + 0.5 * ramp
    box = _clip_box(hull, reach + 2.0, roi)
    if box is None:
        return oval
    features = feather_mask(hull, box, -reach, -params.margin * width, device)
    x0, y0, x1, y1 = box[0] - roi[0], box[1] - roi[1], box[2] - roi[0], box[3] - roi[1]
    part = oval[y0:y1, x0:x1]
    if device is None:
        np.maximum(part, features, out=part)
    else:
        part.copy_(part.maximum(features))
    return oval


def _clip_box(points: np.ndarray, pad: float, roi: tuple[int, int, int, int]) -> tuple[int, int, int, int] | None:
    """The pixel box around ``points`` grown by ``pad``, inside ``roi``; None when they do not meet."""
    x0, y0 = np.floor(points.min(0) - pad).astype(int)
    x1, y1 = np.ceil(points.max(0) + pad).astype(int)
    box = (max(int(x0), roi[0]), max(int(y0), roi[1]), min(int(x1), roi[2]), min(int(y1), roi[3]))
    return box if box[2] > box[0] and box[3] > box[1] else None


def crop_mask(matrix: np.ndarray, size: int, roi: tuple[int, int, int, int], border: float, device: Any = None) -> Any:
    """Soft mask of a whole crop in the frame: 1 inside, falling to 0 over ``border`` of its side at its edge."""
    inverse = np.vstack([matrix, [0.0, 0.0, 1.0]])
    corners = np.array([[0, 0], [size, 0], [size, size], [0, size]], np.float64)
    quad = (np.linalg.inv(inverse) @ np.c_[corners, np.ones(4)].T)[:2].T
    side = size / math.sqrt(abs(np.linalg.det(matrix[:, :2])))
    return feather_mask(quad, roi, 0.0, border * side, device)


class Compositor:
    """Blends filtered crops into frames, reusing a face's mask while its landmarks stay put."""

    def __init__(self) -> None:
        self._masks: dict[int, tuple[np.ndarray, tuple, Any]] = {}

    def forget(self, track_id: int) -> None:
        """Drop a track's cached mask (it ended)."""
        self._masks.pop(track_id, None)

    def paste(self, canvas: Any, face: AlignedFace, output: Any, matrix: np.ndarray, spec: FilterSpec,
              params: CompositeParams, opacity: float = 1.0) -> None:
        """Blend one filtered crop into ``canvas`` ((H, W, 3) uint8, in place).

        output: (3, S', S') or (S', S', 3) in ``spec.value_range``; matrix: the
        frame→crop affine at ``spec.size``; ``opacity`` scales the mask.
        """
        if opacity <= 0:
            return
        roi = quad_roi(matrix, spec.size, canvas.shape[:2])
        if roi is None:
            return
        side = output.shape[-1] if spec.layout == "NCHW" else output.shape[-2]
        at_output = scale_matrix(matrix, side / spec.size)
        warped = frame_from_crop(batch_to_pixels(output, spec.value_range, spec.layout), at_output, roi)
        device = canvas.device if is_torch(canvas) else None
        alpha = self._mask(face, roi, matrix, spec, params, device)
        if opacity < 1:
            alpha = alpha * opacity
        x0, y0, x1, y1 = roi
        target = canvas[y0:y1, x0:x1]
        if params.color_match > 0:
            reference = target.float() if device is not None else target.astype(np.float32)
            warped = match_colour(warped, reference, alpha, params.color_match)
        blend_into(target, warped, alpha)

    def _mask(self, face: AlignedFace, roi: tuple, matrix: np.ndarray, spec: FilterSpec, params: CompositeParams,
              device: Any) -> Any:
        if spec.mask == "crop":
            return crop_mask(matrix, spec.size, roi, spec.border, device)
        key = (roi, params, str(device))
        # All the points: the mask follows the features and the depth (the far side) as well as the oval.
        points = np.asarray(face.landmarks, np.float32)
        cached = self._masks.get(face.track_id)
        if cached is not None and cached[1] == key and np.abs(cached[0] - points).max() < MASK_REUSE_PX:
            return cached[2]
        mask = face_mask(face, roi, params, device)
        self._masks[face.track_id] = (points, key, mask)
        return mask


def composite(image: np.ndarray, faces: Sequence[AlignedFace], outputs: Any, spec: FilterSpec,
              params: CompositeParams, opacity: float = 1.0) -> np.ndarray:
    """A new frame with each face's filtered crop blended in (no mask reuse); see ``Compositor.paste``.

    outputs: (N, ...) one item per face, in ``spec``'s range and layout.
    """
    out = image.clone() if is_torch(image) else image.copy()
    compositor = Compositor()
    for face, output in zip(faces, outputs, strict=True):
        compositor.paste(out, face, output, crop_matrix(face, spec), spec, params, opacity)
    return out


def paste_background(image: Any, result: Any, people: np.ndarray, spec: FilterSpec) -> Any:
    """A new frame: a whole-frame filter's ``result`` item blended in outside the people.

    image: the frame, (H, W, 3) uint8, NumPy or already on the result's device.
    people: (H, W) float32, 1 on a person (there the frame keeps its exact bytes), 0 on the background.
    On the result's device when it is a torch tensor.
    """
    pixels = batch_to_pixels(result, spec.value_range, spec.layout)
    alpha = 1.0 - people
    if is_torch(pixels):
        import torch

        if is_torch(image):
            out = image.clone()
        else:  # copy=True: on the CPU, .to() would hand back the caller's frame, and the blend would write into it
            out = torch.from_numpy(np.ascontiguousarray(image)).to(pixels.device, copy=True)
        alpha = torch.from_numpy(alpha).to(pixels.device)
    else:
        out = image.copy()
    blend_into(out, pixels, alpha)
    return out


def paste_patches(image: Any, patches: Sequence[FacePatch], opacity: float = 1.0) -> Any:
    """A new frame with each landmark filter's patch blended into ``image`` inside its own mask.

    Pixels where every mask is 0 (and every pixel at opacity 0) keep their exact bytes.
    """
    out = image.clone() if is_torch(image) else image.copy()
    if opacity <= 0:
        return out
    for patch in patches:
        x0, y0, x1, y1 = patch.roi
        alpha = patch.mask if opacity >= 1 else patch.mask * opacity
        pixels = patch.pixels.float() if is_torch(patch.pixels) else np.asarray(patch.pixels, np.float32)
        blend_into(out[y0:y1, x0:x1], pixels, alpha)
    return out
