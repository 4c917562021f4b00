"""FFHQ-style face alignment and its smoothing over time.

The oriented square follows the FFHQ dataset's alignment (Karras et al. 2019,
``recreate_aligned_images`` in NVlabs/ffhq-dataset): from the eye centres and
the mouth corners, a centre ``c`` and a half-side vector ``x`` along the crop's
horizontal axis; the vertical half-side is ``x`` turned by 90°. Smoothing works
on those four numbers (cx, cy, ax, ay), so the square never shears.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterator

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
    """Frame→crop 2×3 affine mapping the square onto a size×size crop (crop_from_frame)."""
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


class OneEuro:
    """The One Euro filter (Casiez et al., CHI 2012), vectorised over a few values.

    A low-pass whose cut-off rises with speed: steady when the face is still,
    little lag when it moves. ``min_cutoff`` in Hz; ``beta`` per unit of speed.
    """

    def __init__(self, min_cutoff: float = 1.0, beta: float = 0.02, d_cutoff: float = 1.0) -> None:
        self.min_cutoff, self.beta, self.d_cutoff = min_cutoff, beta, d_cutoff
        self._x: np.ndarray | None = None
        self._dx: np.ndarray | None = None
        self._t: float | None = None

    def __call__(self, x: np.ndarray, t: float) -> np.ndarray:
        """Filter value ``x`` observed at time ``t`` seconds."""
        if self._x is None or self._t is None or t <= self._t:
            self._x, self._dx, self._t = x.astype(np.float64), np.zeros_like(x, np.float64), t
            return self._x.copy()
        dt = t - self._t
        dx = (x - self._x) / dt
        self._dx = self._dx + _alpha(self.d_cutoff, dt) * (dx - self._dx)
        cutoff = self.min_cutoff + self.beta * np.abs(self._dx)
        self._x = self._x + _alpha(cutoff, dt) * (x - self._x)
        self._t = t
        return self._x.copy()


def _alpha(cutoff: np.ndarray | float, dt: float) -> np.ndarray | float:
    tau = 1.0 / (2 * np.pi * cutoff)
    return 1.0 / (1.0 + tau / dt)


def centred_weights(radius: int) -> np.ndarray:
    """Weights of a local quadratic fit over 2·radius+1 frames, evaluated at the centre.

    A Gaussian-weighted (sigma = radius / 2) least-squares parabola, i.e. a
    Savitzky–Golay filter with Gaussian weights: it removes landmark jitter like
    a moving average but keeps the curvature of real motion (a turning head),
    where a plain average cuts corners. The weights sum to 1; the outer ones may
    be negative.
    """
    if radius == 0:
        return np.ones(1)
    k = np.arange(-radius, radius + 1, dtype=np.float64)
    w = np.exp(-0.5 * (k / (radius / 2.0)) ** 2)
    s0, s2, s4 = w.sum(), (w * k**2).sum(), (w * k**4).sum()
    return w * (s4 - s2 * k**2) / (s0 * s4 - s2**2)


class CentredSmoother:
    """Offline smoothing of per-track quads over a centred window.

    Items go in with ``push(key, quads)`` where ``quads`` maps track id → quad;
    each item comes out ``radius`` items later (or at ``flush``) with its quads
    replaced by a local quadratic fit over the frames around it. A centred window
    has no lag, unlike a causal filter.
    """

    def __init__(self, radius: int) -> None:
        self.radius = radius
        # One weight set per usable half-width: windows shrink symmetrically at
        # the stream's edges and where a track starts or ends.
        self._weights = [centred_weights(r) for r in range(radius + 1)]
        self._items: deque[tuple[object, dict[int, np.ndarray]]] = deque()
        self._emitted = 0
        self._seen = 0

    def push(self, key: object, quads: dict[int, np.ndarray]) -> Iterator[tuple[object, dict[int, np.ndarray]]]:
        """Add one frame's quads; yield the frame that is now complete, if any."""
        self._items.append((key, quads))
        self._seen += 1
        if self._seen - self._emitted > self.radius:
            yield self._emit()

    def flush(self) -> Iterator[tuple[object, dict[int, np.ndarray]]]:
        """Yield every frame still held, at the end of the stream."""
        while self._emitted < self._seen:
            yield self._emit()

    def _emit(self) -> tuple[object, dict[int, np.ndarray]]:
        # Buffer holds frames [first, seen); the frame to emit is `_emitted`.
        first = self._seen - len(self._items)
        centre = self._emitted - first
        key, quads = self._items[centre]
        smoothed = {}
        for track_id, quad in quads.items():
            # Symmetric windows only, out to the first frame on either side without
            # this track (or the stream's edge): a lopsided window would pull a
            # moving face towards the side that has more frames.
            window = [quad]
            for k in range(1, self.radius + 1):
                if centre - k < 0 or centre + k >= len(self._items):
                    break
                before = self._items[centre - k][1].get(track_id)
                after = self._items[centre + k][1].get(track_id)
                if before is None or after is None:
                    break
                window = [before, *window, after]
            weights = self._weights[len(window) // 2]
            smoothed[track_id] = weights @ np.stack(window)
        self._emitted += 1
        # The next frame to emit needs nothing older than `radius` frames before it.
        while first < self._emitted - self.radius:
            self._items.popleft()
            first += 1
        return key, smoothed
