"""Every visible part of a face is covered by its mask: turned faces, an oval through an eye, sample clips."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from henshin.engine.align import ffhq_quad
from henshin.engine.composite import CompositeParams, face_mask, face_width
from henshin.engine.tracking import FaceTracker
from henshin.kernels import landmarks as lm
from henshin.kernels.outline import yaw
from henshin.samples import portrait
from henshin.types import AlignedFace

ROI = (0, 0, 512, 512)


@pytest.fixture(scope="module")
def mesh() -> np.ndarray:
    """The astronaut's face mesh from a real picture: (478, 3), z from mediapipe."""
    tracker = FaceTracker()
    try:
        return tracker(portrait())[0].landmarks.astype(np.float64)
    finally:
        tracker.close()


def turned(points: np.ndarray, degrees: float) -> np.ndarray:
    """The mesh turned about the vertical axis through its oval's centre and projected straight on.

    Positive degrees turn the subject's right side (the image's left) away from the camera.
    """
    t = np.deg2rad(degrees)
    centre = points[list(lm.FACE_OVAL)].mean(0)
    p = points - centre
    x = p[:, 0] * np.cos(t) + p[:, 2] * np.sin(t)
    z = -p[:, 0] * np.sin(t) + p[:, 2] * np.cos(t)
    return (np.stack([x, p[:, 1], z], 1) + centre).astype(np.float32)


def aligned(points: np.ndarray) -> AlignedFace:
    return AlignedFace(0, points, ffhq_quad(points))


def at(mask: np.ndarray, xy: np.ndarray) -> np.ndarray:
    """The mask's values at frame points (bilinear)."""
    pts = np.asarray(xy, np.float32).reshape(-1, 1, 2)
    return cv2.remap(mask, pts[..., 0], pts[..., 1], cv2.INTER_LINEAR)[:, 0]


def far_cheek(points: np.ndarray, far_eye: tuple[int, ...], width: float) -> np.ndarray:
    """Indices of the mesh points of the far cheek, chosen on the frontal face.

    Beyond the far eye's centre, between the eyes' and the mouth's height, and
    at least 0.2 face widths inside the oval: points any mask must cover frontally.
    """
    eye = points[list(far_eye), :2]
    centre = points[:, :2].mean(0)
    outward = 1.0 if eye[:, 0].mean() > centre[0] else -1.0
    corner = (eye[:, 0] * outward).mean()
    top, bottom = eye[:, 1].mean(), points[[lm.MOUTH_LEFT, lm.MOUTH_RIGHT], 1].mean()
    oval = points[list(lm.FACE_OVAL), :2].astype(np.float32).reshape(-1, 1, 2)
    depth = np.array(
        [cv2.pointPolygonTest(oval, (float(x), float(y)), True) for x, y in points[:, :2]]
    )
    chosen = (
        (points[:, 0] * outward > corner)
        & (points[:, 1] > top)
        & (points[:, 1] < bottom)
        & (depth > 0.2 * width)
    )
    return np.nonzero(chosen)[0]


@pytest.mark.parametrize("degrees", [0, 10, 20, 30, 40, 50, -30, -50])
def test_a_turned_face_has_both_eyes_and_the_far_cheek_covered(mesh, degrees):
    points = turned(mesh, degrees)
    face = aligned(points)
    mask = face_mask(face, ROI, CompositeParams())
    far_eye = lm.RIGHT_EYE if degrees >= 0 else lm.LEFT_EYE
    cheek = far_cheek(mesh, far_eye, face_width(aligned(mesh)))
    assert len(cheek) >= 10
    eyes = points[list(lm.LEFT_EYE + lm.RIGHT_EYE + lm.LEFT_IRIS + lm.RIGHT_IRIS), :2]
    assert at(mask, eyes).min() > 0.99, "an eye is not fully covered"
    assert at(mask, points[cheek, :2]).min() > 0.95, "the far cheek is not fully covered"
    if abs(degrees) >= 20:
        # the mesh's own far silhouette: its farthest point along the face's axis
        side = -1.0 if degrees > 0 else 1.0
        silhouette = points[np.argmax(points[:, 0] * side), :2]
        assert at(mask, silhouette[None])[0] > 0.5, "the mask stops short of the far silhouette"


def test_the_yaw_is_read_from_the_mesh_depth(mesh):
    for degrees in (-40, -20, 0, 20, 40):
        assert np.rad2deg(yaw(turned(mesh, degrees))) == pytest.approx(-degrees, abs=5)


def test_an_eye_the_oval_runs_through_is_covered_with_a_margin(mesh):
    """A drawn character's large eye: the mesh's far contour crosses it (seen on real footage)."""
    points = turned(mesh, 35).copy()
    eye = points[list(lm.RIGHT_EYE), :2]
    through = eye[:, 0].mean()  # pull the far half of the oval in to the eye's centre line
    ring = np.asarray(lm.FACE_OVAL)
    points[ring, 0] = np.maximum(points[ring, 0], through)
    params = CompositeParams()
    mask = face_mask(aligned(points), ROI, params)
    # the eye's outline, and a ring around it at 0.9 of the margin
    margin = 0.9 * params.margin * face_width(aligned(points))
    centre = eye.mean(0)
    outward = eye - centre
    ring_pts = eye + outward / np.linalg.norm(outward, axis=1, keepdims=True) * margin
    assert at(mask, eye).min() > 0.99
    assert at(mask, ring_pts).min() > 0.99
