"""Smoothing per-face values over time: one ``Smoother`` protocol, an offline and a live kind.

A smoother takes each frame's values per track (the FFHQ square and the
landmarks, as one vector per face) and gives frames back, in order, with their
values smoothed. Offline the future is known: ``CentredSmoother`` holds frames
back ``radius`` frames and fits a local quadratic over a symmetric window, with
no lag. Live it is not: ``OneEuroSmoother`` gives each frame back at once,
filtered causally per track. Neither ever smooths across two tracks, and every
track ends at a shot change, so neither smooths across a cut.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from typing import Generic, Protocol, TypeVar

import numpy as np

T = TypeVar("T")
Values = dict[int, np.ndarray]


class Smoother(Protocol[T]):
    """Per-track values in, the same frames out in order, values smoothed."""

    def push(self, item: T, values: Values, t: float) -> Iterator[tuple[T, Values]]:
        """Add one frame's values (track id → vector) at time ``t`` seconds; yield frames now complete."""
        ...

    def flush(self) -> Iterator[tuple[T, Values]]:
        """Yield every frame still held (the end of the stream)."""
        ...

    def end_track(self, track_id: int) -> None:
        """Forget a track that ended."""
        ...


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


class OneEuroSmoother(Generic[T]):
    """Live smoothing: each frame comes back at once, each track through its own One Euro filter.

    ``enabled=False`` gives the values back untouched (the same frames, no smoothing).
    """

    def __init__(self, min_cutoff: float = 1.5, beta: float = 0.01, enabled: bool = True) -> None:
        self.min_cutoff, self.beta, self.enabled = min_cutoff, beta, enabled
        self._filters: dict[int, OneEuro] = {}

    def push(self, item: T, values: Values, t: float) -> Iterator[tuple[T, Values]]:
        if not self.enabled:
            yield item, values
            return
        out = {}
        for track_id, value in values.items():
            euro = self._filters.setdefault(track_id, OneEuro(self.min_cutoff, self.beta))
            out[track_id] = euro(value, t)
        yield item, out

    def flush(self) -> Iterator[tuple[T, Values]]:
        return iter(())

    def end_track(self, track_id: int) -> None:
        self._filters.pop(track_id, None)


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


class CentredSmoother(Generic[T]):
    """Offline smoothing of per-track values over a centred window.

    Each frame comes out ``radius`` frames later (or at ``flush``) with its values
    replaced by a local quadratic fit over the frames around it. Radius 0 gives
    every frame back at once, untouched.
    """

    def __init__(self, radius: int) -> None:
        self.radius = radius
        # One weight set per usable half-width: windows shrink symmetrically at
        # the stream's edges and where a track starts or ends.
        self._weights = [centred_weights(r) for r in range(radius + 1)]
        self._items: deque[tuple[T, Values]] = deque()
        self._emitted = 0
        self._seen = 0

    def push(self, item: T, values: Values, t: float = 0.0) -> Iterator[tuple[T, Values]]:
        self._items.append((item, values))
        self._seen += 1
        if self._seen - self._emitted > self.radius:
            yield self._emit()

    def flush(self) -> Iterator[tuple[T, Values]]:
        while self._emitted < self._seen:
            yield self._emit()

    def end_track(self, track_id: int) -> None:
        pass  # the window already stops at the first frame without the track

    def _emit(self) -> tuple[T, Values]:
        # Buffer holds frames [first, seen); the frame to emit is `_emitted`.
        first = self._seen - len(self._items)
        centre = self._emitted - first
        item, values = self._items[centre]
        smoothed = {}
        for track_id, value in values.items():
            # Symmetric windows only, out to the first frame on either side without
            # this track (or the stream's edge): a lopsided window would pull a
            # moving face towards the side that has more frames.
            window = [value]
            for k in range(1, self.radius + 1):
                if centre - k < 0 or centre + k >= len(self._items):
                    break
                before = self._items[centre - k][1].get(track_id)
                after = self._items[centre + k][1].get(track_id)
                if before is None or after is None:
                    break
                window = [before, *window, after]
            smoothed[track_id] = self._weights[len(window) // 2] @ np.stack(window)
        self._emitted += 1
        # The next frame to emit needs nothing older than `radius` frames before it.
        while first < self._emitted - self.radius:
            self._items.popleft()
            first += 1
        return item, smoothed
