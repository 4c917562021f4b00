"""What a face mask must cover: every feature the mesh found, and the far side of a turned face.

Convention: ``points`` are the (478, 3) face-mesh landmarks in frame pixels, z in
the same scale as x and larger away from the camera (mediapipe's depth). "Left"
and "right" are the subject's. Angles in radians.

The mesh's face oval is a fixed ring of vertices, not the face's silhouette: on a
face turned away the far half of the ring slides behind the cheek, and on faces
with large eyes (drawn characters) it can run through the far eye. Two shapes
make up for it: the convex hull of the features (eyes, brows, nose, lips), which
the compositor covers with a margin, and the oval with its far side pushed out by
how much a turned head's silhouette lies beyond the ring.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from henshin.kernels import landmarks as lm

# mediapipe's FACEMESH_NOSE vertices: the bridge, the tip and the wings.
NOSE = (1, 2, 4, 5, 6, 19, 45, 48, 64, 94, 97, 98, 115, 168, 195, 197, 220, 275, 278, 294, 326, 327, 344, 440)  # fmt: skip
FEATURES = (
    lm.LEFT_EYE
    + lm.RIGHT_EYE
    + lm.LEFT_BROW
    + lm.RIGHT_BROW
    + lm.LIPS_OUTER
    + NOSE
    + (lm.LEFT_IRIS_CENTER, lm.RIGHT_IRIS_CENTER)
    + lm.LEFT_IRIS
    + lm.RIGHT_IRIS
)
# The oval ring starts at the top of the forehead (10) and goes round the subject's left side
# first, so ring[k] and ring[36 - k] mirror each other; these pairs span the cheeks.
_N = len(lm.FACE_OVAL)
CHEEK_PAIRS = tuple((lm.FACE_OVAL[k], lm.FACE_OVAL[_N - k]) for k in range(5, 13))
# Beyond MAX_YAW the mesh itself is unreliable: push no further. Below FRONTAL_YAW the mesh's
# depth wobbles on a frontal face: no push. From about TURNED_YAW the far cheek, not the
# mesh's ring, is the silhouette.
MAX_YAW = math.radians(60.0)
FRONTAL_YAW = math.radians(5.0)
TURNED_YAW = math.radians(20.0)


def face_axis(points: np.ndarray) -> np.ndarray:
    """Unit vector along the face's horizontal axis in the frame, towards the subject's left."""
    left, right = lm.eye_centers(points)
    axis = np.asarray(left - right, np.float64)
    return axis / max(float(np.hypot(*axis)), 1e-9)


def yaw(points: np.ndarray) -> float:
    """How far the face is turned: positive when the subject's left side is the far one.

    From the depth difference across the cheeks against their spread along the face's
    axis (``atan2(Δz, Δx)`` summed over mirrored oval pairs); 0 when there is no depth.
    """
    axis = face_axis(points)
    left = np.asarray(points[[a for a, _ in CHEEK_PAIRS]], np.float64)
    right = np.asarray(points[[b for _, b in CHEEK_PAIRS]], np.float64)
    across = float(((left[:, :2] - right[:, :2]) @ axis).sum())
    depth = float((left[:, 2] - right[:, 2]).sum()) if points.shape[1] > 2 else 0.0
    return math.atan2(depth, across)


def features_hull(points: np.ndarray) -> np.ndarray:
    """(K, 2) convex hull of the eyes, brows, nose and lips, in frame pixels."""
    xy = np.ascontiguousarray(points[list(FEATURES), :2], np.float32)
    return cv2.convexHull(xy)[:, 0].astype(np.float64)


def far_side_push(points: np.ndarray, extra_px: float) -> float:
    """How far (pixels) the oval's far side moves out for this face's yaw.

    A head of half-width R turned by θ shows its side about R(1 − cos θ) beyond
    where the mesh's ring lands (a cylinder's silhouette stays put while the ring
    turns in), plus up to ``extra_px`` (all of it from ``TURNED_YAW`` on) so that
    a feather pulled in from the edge lies beyond that silhouette rather than on
    the cheek. θ is counted from ``FRONTAL_YAW``, so a frontal face gets 0.
    """
    theta = min(max(abs(yaw(points)) - FRONTAL_YAW, 0.0), MAX_YAW)
    a, b = CHEEK_PAIRS[3]
    half_width = 0.5 * float(np.linalg.norm(np.asarray(points[a], np.float64) - points[b]))
    share = min(theta / (TURNED_YAW - FRONTAL_YAW), 1.0)
    return half_width * (1.0 - math.cos(theta)) + extra_px * share


def covering_oval(points: np.ndarray, extra_px: float = 0.0) -> np.ndarray:
    """(36, 2) face oval with its far side pushed out by ``far_side_push``.

    Each ring point of the far half moves along the face's axis, away from the
    near side, by the push times ``sin(π k / 18)`` for its place k on the ring
    counted from the forehead: the cheek fully, the temple and jaw partly, the
    forehead and chin not at all (where a point lies in the frame would put a
    turned forehead's corner first).
    """
    oval = np.asarray(points[list(lm.FACE_OVAL), :2], np.float64)
    push = far_side_push(points, extra_px)
    if push <= 0:
        return oval
    far = 1.0 if yaw(points) > 0 else -1.0  # +1: the subject's left side is the far one
    # the ring goes round the subject's left first: k 0..18 is the left half, 18..36 the right
    weight = (far * np.sin(np.pi * np.arange(_N) / (_N // 2))).clip(0.0, None)
    axis = face_axis(points) * far  # towards the far side
    return oval + (push * weight)[:, None] * axis
