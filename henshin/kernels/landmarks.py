"""Topology of mediapipe's 478-point face mesh (refined landmarks).

Index loops are ordered around each region so they can be filled as polygons.
They follow mediapipe's own connection sets (``FACEMESH_FACE_OVAL`` and friends);
``tests/test_landmarks.py`` checks them against the installed mediapipe.
"Left" and "right" are the subject's, as in mediapipe.
"""

from __future__ import annotations

import numpy as np

NUM_LANDMARKS = 478

FACE_OVAL = (
    10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400, 377,
    152, 148, 176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109,
)
LIPS_OUTER = (
    61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291, 409, 270, 269, 267, 0, 37, 39, 40, 185,
)
LIPS_INNER = (
    78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308, 415, 310, 311, 312, 13, 82, 81, 80, 191,
)
LEFT_EYE = (263, 249, 390, 373, 374, 380, 381, 382, 362, 398, 384, 385, 386, 387, 388, 466)
RIGHT_EYE = (33, 7, 163, 144, 145, 153, 154, 155, 133, 173, 157, 158, 159, 160, 161, 246)
# Brows are two open chains in mediapipe (upper and lower edge); joined here into a loop.
LEFT_BROW = (300, 293, 334, 296, 336, 285, 295, 282, 283, 276)
RIGHT_BROW = (70, 63, 105, 66, 107, 55, 65, 52, 53, 46)
# The lower face around the mouth, where a beard grows: the jaw line of the oval from ear to ear
# under the chin, then up the cheeks along the nasolabial folds to under the nose.
BEARD = (
    132, 58, 172, 136, 150, 149, 176, 148, 152, 377, 400, 378, 379, 365, 397, 288, 361,
    411, 425, 327, 2, 98, 205, 187,
)
LEFT_IRIS_CENTER = 473
LEFT_IRIS = (474, 475, 476, 477)
RIGHT_IRIS_CENTER = 468
RIGHT_IRIS = (469, 470, 471, 472)
MOUTH_LEFT = 291
MOUTH_RIGHT = 61
NOSE_TIP = 1

REGIONS: dict[str, tuple[int, ...]] = {
    "face_oval": FACE_OVAL,
    "lips": LIPS_OUTER,
    "inner_mouth": LIPS_INNER,
    "left_eye": LEFT_EYE,
    "right_eye": RIGHT_EYE,
    "left_brow": LEFT_BROW,
    "right_brow": RIGHT_BROW,
    "left_iris": LEFT_IRIS,
    "right_iris": RIGHT_IRIS,
}


def eye_centers(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Centres of the subject's left and right eye contours, from (478, 2+) points.

    The contour mean is used rather than the iris, which moves with the gaze.
    """
    return points[list(LEFT_EYE), :2].mean(0), points[list(RIGHT_EYE), :2].mean(0)


def mean_shift(a: np.ndarray, b: np.ndarray) -> float:
    """Mean 2-D distance between corresponding points of two landmark sets of one face, in pixels."""
    return float(np.linalg.norm(np.asarray(a)[:, :2] - np.asarray(b)[:, :2], axis=1).mean())
