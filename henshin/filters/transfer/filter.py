"""Attribute transfer from a reference face (after GeoGAN, Yin, Liu and Loy, AAAI 2019).

GeoGAN carries an attribute of a reference face (a beard, make-up, brows) onto another face
along a flow that follows the faces' geometry, then masks and blends it in. Here the flow is
the face mesh itself: the reference picture's face is found and meshed once (mediapipe,
still-image mode, a Delaunay triangulation of its 478 landmarks); each frame, every pixel of
the region on each tracked face is mapped through the matching mesh triangle onto the
reference (piecewise affine, ``henshin.kernels.mesh``), the reference's pixels are brought
over, their colour is harmonised to the target (Lab mean and spread of both faces' skin,
sampled at the mesh's skin vertices; Reinhard et al. 2001), and they are blended inside the
region's feathered mask. Outside the mask the frame keeps its exact bytes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np

from henshin.errors import InputNotFoundError, OptionError
from henshin.filters.base import LandmarkFilter, check_range, register
from henshin.filters.geometry.warp import face_axes
from henshin.filters.reference import face_landmarks, read_picture
from henshin.kernels import landmarks as lm
from henshin.kernels.color import apply_lab_table, lab_stats, lab_transfer_table
from henshin.kernels.mesh import border_triangles, triangulate, warp_through_mesh
from henshin.kernels.regions import region_box, region_mask, shape_polygon
from henshin.types import FaceContext, FacePatch

Region = Literal["lips", "inner_mouth", "eyes", "irises", "brows", "skin", "oval", "beard"]
FEATURES = (
    "lips_outer",
    "left_eye",
    "right_eye",
    "left_brow",
    "right_brow",
)  # not skin, for colour samples
FEATURE_MARGIN = 0.08  # eye distances kept between a skin sample and a feature


@dataclass(frozen=True)
class TransferParams:
    """reference: picture whose face's region is carried over (required); region: lips,
    inner_mouth, eyes, irises, brows, skin, oval or beard (the lower face around the mouth);
    strength: 0 keeps the input, 1 the reference's region in full; harmonize: 0 keeps the
    reference's own colours, 1 shifts them by the difference between the two faces' skin
    (light and skin tone, Lab mean and spread); feather: soft edge width in eye distances."""

    reference: str = ""
    region: Region = "lips"
    strength: float = 1.0
    harmonize: float = 1.0
    feather: float = 0.03

    def __post_init__(self) -> None:
        if not self.reference:
            raise OptionError(
                "the transfer filter needs --param reference=PICTURE, a picture of the face whose "
                "region is carried over."
            )
        if not Path(self.reference).expanduser().is_file():
            raise InputNotFoundError(
                f"reference picture {self.reference} does not exist; check the path given "
                "in reference=."
            )
        check_range("strength", self.strength, 0.0, 1.0)
        check_range("harmonize", self.harmonize, 0.0, 1.0)
        check_range("feather", self.feather, 0.0, 0.5)


@dataclass(frozen=True)
class ReferenceFace:
    """The reference, meshed once: its picture (H, W, 3) uint8 RGB, landmarks (478, 3) in its pixels,
    the mesh triangles (T, 3) and which of them lie on the mesh's border (T,), the skin vertices
    colour is sampled at, and their Lab statistics."""

    image: np.ndarray
    points: np.ndarray
    triangles: np.ndarray
    border: np.ndarray
    skin: np.ndarray
    skin_stats: np.ndarray

    @classmethod
    def read(cls, path: str) -> ReferenceFace:
        """Find, mesh and sample the largest face of a picture; a picture without one is one sentence."""
        image = read_picture(path, "reference picture", "check the path given in reference=")
        points = face_landmarks(image, f"the reference picture {path}")
        skin = skin_vertices(points)
        triangles = triangulate(points)
        return cls(
            image,
            points,
            triangles,
            border_triangles(triangles),
            skin,
            lab_stats(sample(image, points, skin)),
        )


def skin_vertices(points: np.ndarray) -> np.ndarray:
    """Indices of mesh vertices on skin: inside the oval's border, away from lips, eyes and brows."""
    eye_dist, _, _ = face_axes(np.asarray(points[:, :2], np.float64))
    margin = FEATURE_MARGIN * eye_dist
    border = set(lm.FACE_OVAL)
    polygons = [shape_polygon(points, name, margin).astype(np.float32) for name in FEATURES]
    keep = []
    for i, (x, y) in enumerate(
        np.asarray(points[: lm.NUM_LANDMARKS - 10, :2], np.float64)
    ):  # irises are eyes
        if i not in border and all(
            cv2.pointPolygonTest(poly, (x, y), False) < 0 for poly in polygons
        ):
            keep.append(i)
    return np.asarray(keep, np.int64)


def sample(image: np.ndarray, points: np.ndarray, vertices: np.ndarray) -> np.ndarray:
    """(N, 3) uint8 RGB at the given landmarks (nearest pixel, clamped to the picture)."""
    h, w = image.shape[:2]
    xy = np.rint(points[vertices, :2]).astype(np.int64)
    return image[np.clip(xy[:, 1], 0, h - 1), np.clip(xy[:, 0], 0, w - 1)]


def transfer_face(
    image: np.ndarray, points: np.ndarray, ref: ReferenceFace, p: TransferParams
) -> FacePatch | None:
    """One face's region carried over from the reference, as a patch; None when it is off-frame or empty."""
    region = face_region(points, p, image.shape[:2])
    if region is None:
        return None
    roi, mask = region
    pixels = harmonise(carry(points, ref, roi), image, points, ref, p.harmonize)
    if p.strength < 1:
        mask *= p.strength
    return FacePatch(roi, pixels, mask)


def face_region(
    points: np.ndarray, p: TransferParams, shape: tuple[int, int]
) -> tuple[tuple[int, int, int, int], np.ndarray] | None:
    """The region's box in the frame and its feathered mask there; None when off-frame or empty."""
    eye_dist, _, _ = face_axes(np.asarray(points[:, :2], np.float64))
    feather_px = max(p.feather * eye_dist, 0.5)
    roi = region_box(points, p.region, feather_px, shape)
    if roi is None:
        return None
    mask = region_mask(points, p.region, roi, feather_px)
    return (roi, mask) if mask.any() else None


def carry(points: np.ndarray, ref: ReferenceFace, roi: tuple[int, int, int, int]) -> np.ndarray:
    """The reference's pixels brought onto ``roi`` of the frame through the mesh: (h, w, 3) uint8."""
    return warp_through_mesh(ref.image, points, ref.points, ref.triangles, roi, ref.border)


def harmonise(
    pixels: np.ndarray, image: np.ndarray, points: np.ndarray, ref: ReferenceFace, amount: float
) -> np.ndarray:
    """The carried pixels shifted ``amount`` of the way from the reference's skin colour to the face's."""
    if amount <= 0:
        return pixels
    table = lab_transfer_table(ref.skin_stats, lab_stats(sample(image, points, ref.skin)), amount)
    return pixels if table is None else apply_lab_table(pixels, table)


@register
class TransferFilter(LandmarkFilter):
    """Carry a region of a reference face (lips, brows, beard, ...) onto every face."""

    name = "transfer"
    Params = TransferParams

    def __init__(self, params: TransferParams, runtime: Any = None, weights: Any = None) -> None:
        super().__init__(params, runtime, weights)
        self.reference = ReferenceFace.read(params.reference)

    def set_params(self, **changes: str) -> None:
        old = self.params
        super().set_params(**changes)
        if self.params.reference != old.reference:
            try:
                self.reference = ReferenceFace.read(self.params.reference)
            except BaseException:  # a reference that fails leaves the filter as it was
                self.params = old
                raise

    def edit(self, image: np.ndarray, faces: Sequence[FaceContext]) -> list[FacePatch]:
        if self.params.strength == 0:
            return []
        patches = (
            transfer_face(image, face.landmarks, self.reference, self.params) for face in faces
        )
        return [patch for patch in patches if patch is not None]
