"""FFHQ alignment geometry: the oriented square of a face from its landmarks, and its crop matrix.

The square follows the FFHQ dataset's alignment (Karras et al. 2019,
``recreate_aligned_images`` in NVlabs/ffhq-dataset): from the eye centres and the mouth
corners, a centre ``c`` and a half-side vector ``x`` along the crop's horizontal axis; the
vertical half-side is ``x`` turned by 90°. Pure geometry on landmarks, shared by the engine
(faces in frames) and by filters that align a still picture (a reference face).

Convention: landmarks (478, 2+) in image pixels; a quad is (cx, cy, ax, ay); a matrix is the
2×3 image→crop affine (``crop_from_frame``).
"""

from __future__ import annotations

import math

import numpy as np

from henshin.kernels.landmarks import MOUTH_LEFT, MOUTH_RIGHT, eye_centers


def ffhq_quad(landmarks: np.ndarray) -> np.ndarray:
    """(cx, cy, ax, ay): centre and half-side vector of the FFHQ square for one face."""
    left_eye, right_eye = eye_centers(landmarks)
    # FFHQ's "eye_left" is the one on the image's left: the subject's right eye.
    eye_avg = (left_eye + right_eye) * 0.5
    eye_to_eye = left_eye - right_eye
    mouth_avg = (landmarks[MOUTH_LEFT, :2] + landmarks[MOUTH_RIGHT, :2]) * 0.5
    eye_to_mouth = mouth_avg - eye_avg
    # x points along the eye line, corrected by the eye→mouth direction turned by -90°.
    x = eye_to_eye + np.array([eye_to_mouth[1], -eye_to_mouth[0]])
    x /= np.hypot(*x)
    x *= max(np.hypot(*eye_to_eye) * 2.0, np.hypot(*eye_to_mouth) * 1.8)
    c = eye_avg + eye_to_mouth * 0.1
    return np.array([c[0], c[1], x[0], x[1]], np.float64)


def quad_matrix(quad: np.ndarray, size: int) -> np.ndarray:
    """Image→crop 2×3 affine mapping the square onto a size×size crop (crop_from_frame)."""
    cx, cy, ax, ay = quad
    half = math.hypot(ax, ay)
    # Unit axes of the square in the frame: u along x, v = u turned 90° (down in the image).
    ux, uy = ax / half, ay / half
    vx, vy = -uy, ux
    s = size / (2 * half)
    # crop = s * R^T (p - (c - x - y))
    ox, oy = cx - ax - half * vx, cy - ay - half * vy
    return np.array([[s * ux, s * uy, -s * (ux * ox + uy * oy)],
                     [s * vx, s * vy, -s * (vx * ox + vy * oy)]], np.float64)
