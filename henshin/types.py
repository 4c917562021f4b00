"""The plain data types that travel between the engine and the filters.

Arrays are NumPy on the CPU path and torch tensors on the GPU path; the shapes and
ranges below hold for both. Nothing here imports the engine or a filter.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Literal

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
    """One tracked face in one frame, as the tracker saw it.

    landmarks: (478, 3) float32; x and y in frame pixels, z in the same scale as x.
    """

    track_id: int
    landmarks: np.ndarray

    @property
    def box(self) -> tuple[float, float, float, float]:
        """(x0, y0, x1, y1) of the landmarks in frame pixels."""
        xy = self.landmarks[:, :2]
        x0, y0 = xy.min(0)
        x1, y1 = xy.max(0)
        return float(x0), float(y0), float(x1), float(y1)


@dataclass(slots=True)
class AlignedFace:
    """A tracked face after smoothing: what cropping, filters and masks use.

    landmarks: (478, 3) smoothed over time, frame pixels. quad: the oriented
    FFHQ square (cx, cy, ax, ay) smoothed with them: its centre and half-side
    vector along the crop's x axis (``crop_from_frame`` matrices come from it).
    """

    track_id: int
    landmarks: np.ndarray
    quad: np.ndarray


@dataclass(slots=True)
class FacePatch:
    """New pixels for one region of the frame and where to use them.

    roi: (x0, y0, x1, y1) in frame pixels; pixels: (y1-y0, x1-x0, 3) uint8 or
    float32 0..255 RGB; mask: (y1-y0, x1-x0) float32 in [0, 1]. Outside the mask
    (mask 0) the frame keeps its exact bytes.
    """

    roi: tuple[int, int, int, int]
    pixels: Any
    mask: Any


Consumes = Literal["crops", "frame", "landmarks"]


@dataclass(frozen=True)
class FilterSpec:
    """What a filter consumes, declared, so the engine never guesses.

    consumes: ``crops`` (aligned square face crops), ``frame`` (the whole frame)
    or ``landmarks`` (the frame and each face's landmarks; the filter returns
    patches). size: the crop side. value_range/layout: what the batch holds, e.g.
    (0, 1) NCHW float32; the engine converts uint8 into it in one step and back
    once. array/device: a NumPy batch on the CPU, or a torch tensor on ``device``.
    devices: where the filter can run at all. mask: where the compositor uses a
    crop filter's output: the face mask (``face``) or the whole crop inside a
    feathered border (``crop``, for filters that change the face's outline);
    for a frame filter, ``background`` puts its output only outside the people
    (the engine segments them), anything else uses the whole frame.
    temporal: the filter wants its previous output (and input, and crop matrix)
    for the same track. temporal_blend: how much of its previous output, warped
    by the optical flow of its input, the engine mixes into each output (0..1,
    0: none; see ``henshin.engine.temporal``); any crop or frame filter can
    ask for it, and at 0 the engine does no temporal work at all. crop: how a
    face crop is framed: ``aligned`` (the FFHQ square, turned with the face) or
    ``box`` (an upright square ``box_scale`` times the landmarks' box, centred on it).
    free_size: the network is fully convolutional: crops of any side (the filter
    pads to what it needs) give the same picture in fewer pixels, so the live
    governor may cut them smaller than ``size``.
    """

    consumes: Consumes = "crops"
    size: int = 256
    value_range: tuple[float, float] = (-1.0, 1.0)
    layout: Literal["NCHW", "NHWC"] = "NCHW"
    array: Literal["numpy", "torch"] = "numpy"
    device: str = "cpu"
    devices: tuple[str, ...] = ("cpu",)
    mask: Literal["face", "crop", "background"] = "face"
    border: float = 0.1
    temporal: bool = False
    temporal_blend: float = 0.0
    crop: Literal["aligned", "box"] = "aligned"
    box_scale: float = 1.3
    free_size: bool = False


@dataclass(slots=True)
class FaceContext:
    """What a filter is told about one batch item besides its pixels.

    track_id: the face's track (-1 for a whole frame); state: the filter's own
    per-track state from ``start_track`` (None for a whole frame); index/time:
    the frame's number and presentation time in seconds; matrix: the 2×3
    ``crop_from_frame`` affine at the filter's crop size (None for a whole frame);
    landmarks: (478, 3) smoothed landmarks in frame pixels (None for a whole
    frame without faces); previous: this track's (or the frame's) previous output
    in the filter's range and layout, for filters whose spec is ``temporal`` (a
    ``temporal_blend`` is done by the engine after the call); previous_input/previous_matrix: the batch item
    that output came from and its ``matrix``, so a filter can find the motion
    between the two. All three are None on a track's first frame, after a cut,
    and after a gap of more than half a second (the effect was off).
    """

    track_id: int
    state: Any = None
    index: int = 0
    time: float = 0.0
    matrix: np.ndarray | None = None
    landmarks: np.ndarray | None = None
    previous: Any = None
    previous_input: Any = None
    previous_matrix: np.ndarray | None = None
