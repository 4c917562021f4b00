"""The plain data types that travel through the pipeline."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np


@dataclass(slots=True)
class Frame:
    """One video frame.

    image: (H, W, 3) uint8 RGB, upright (container rotation already applied).
    pts/time_base: the container's timestamp, kept as an integer and a Fraction.
    captured_at: monotonic ns when the frame entered the engine, for latency.
    """

    image: np.ndarray
    index: int
    pts: int | None = None
    time_base: Fraction | None = None
    captured_at: int = field(default_factory=time.monotonic_ns)

    @property
    def time(self) -> float | None:
        """Presentation time in seconds, when the container gave one."""
        if self.pts is None or self.time_base is None:
            return None
        return float(self.pts * self.time_base)


@dataclass(slots=True)
class Face:
    """One tracked face in one frame.

    landmarks: (478, 3) float32; x and y in frame pixels, z in the same scale as x.
    box: (x0, y0, x1, y1) of the landmarks in frame pixels.
    """

    track_id: int
    landmarks: np.ndarray

    @property
    def box(self) -> tuple[float, float, float, float]:
        xy = self.landmarks[:, :2]
        x0, y0 = xy.min(0)
        x1, y1 = xy.max(0)
        return float(x0), float(y0), float(x1), float(y1)


@dataclass(slots=True)
class AlignedFace:
    """A face with its alignment.

    matrix: 2×3 affine from frame pixels to crop pixels (crop_from_frame).
    quad: the oriented-square parameters (cx, cy, ax, ay) it was built from,
    centre and half-side vector along the crop's x axis.
    points: (478, 3) landmarks smoothed over time like the quad (None: not smoothed).
    """

    face: Face
    quad: np.ndarray
    matrix: np.ndarray
    points: np.ndarray | None = None

    @property
    def landmarks(self) -> np.ndarray:
        """The smoothed landmarks where there are some, else the tracker's."""
        return self.face.landmarks if self.points is None else self.points


@dataclass(slots=True)
class Work:
    """A frame and everything computed for it so far; what the stages pass along."""

    frame: Frame
    tracked: list[Face] = field(default_factory=list)
    faces: list[AlignedFace] = field(default_factory=list)
    crops: np.ndarray | None = None  # (N, 3, S, S) float32 in [-1, 1]
    filtered: np.ndarray | None = None  # (N, 3, S', S') float32 in [-1, 1]
    patches: list | None = None  # FacePatch from a landmark filter
    output: np.ndarray | None = None  # (H, W, 3) uint8 RGB
