"""One frame through track → align → filter → composite, synchronously (the live path).

The offline pipeline runs the same steps as separate threads for throughput;
live, one frame at a time keeps latency lowest, and alignment is smoothed with
a causal One Euro filter per track because the future is not known.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from henshin.engine.align import OneEuro, ffhq_quad, quad_matrix
from henshin.engine.composite import CompositeParams, composite, paste_patches
from henshin.engine.tracking import FaceTracker, TrackerConfig
from henshin.filters.base import Filter, LandmarkFilter
from henshin.kernels.warp import crop_from_frame, to_uint8_image, to_unit_tensor
from henshin.types import AlignedFace, Frame


@dataclass
class OneEuroConfig:
    """One Euro settings for alignment (cut-off in Hz, beta per pixel/s)."""

    min_cutoff: float = 1.5
    beta: float = 0.01


@dataclass
class FrameProcessor:
    """Applies a filter to single frames; the filter and its parameters can change between frames."""

    filter: Filter
    composite: CompositeParams = field(default_factory=CompositeParams)
    tracker_config: TrackerConfig = field(default_factory=TrackerConfig)
    smoothing: OneEuroConfig = field(default_factory=OneEuroConfig)
    enabled: bool = True
    stage_s: dict[str, float] = field(default_factory=lambda: dict.fromkeys(("track", "align", "filter", "composite"), 0.0))

    def __post_init__(self) -> None:
        self._tracker: FaceTracker | None = None
        self._euro: dict[int, OneEuro] = {}
        self._euro_points: dict[int, OneEuro] = {}

    def __call__(self, frame: Frame) -> tuple[np.ndarray, int]:
        """The filtered image and the number of faces it had."""
        if not self.enabled:
            return frame.image, 0
        if self.filter.scope == "frame":
            batch = self._timed("filter", self.filter.process, to_unit_tensor(frame.image), [-1])
            return to_uint8_image(batch[0]), 0
        faces = self._timed("track", self._track, frame)
        if not faces:
            return frame.image, 0
        if isinstance(self.filter, LandmarkFilter):
            patches = self._timed("filter", self.filter.edit, frame.image, [f.landmarks for f in faces],
                                  [f.face.track_id for f in faces])
            return self._timed("composite", paste_patches, frame.image, patches, self.filter.opacity), len(faces)
        size = self.filter.input_size
        crops = self._timed("align", crop_from_frame, frame.image, np.stack([f.matrix for f in faces]), size)
        out = self._timed("filter", self.filter.process, crops, [f.face.track_id for f in faces])
        image = self._timed("composite", composite, frame.image, faces, out, size, self.composite, self.filter.opacity)
        return image, len(faces)

    def close(self) -> None:
        """Release the tracker (the filter belongs to the caller)."""
        if self._tracker is not None:
            self._tracker.close()
            self._tracker = None

    def _track(self, frame: Frame) -> list[AlignedFace]:
        if self._tracker is None:
            self._tracker = FaceTracker(self.tracker_config)
        now = frame.captured_at / 1e9
        aligned = []
        for face in self._tracker(frame.image):
            euro = self._euro.setdefault(face.track_id, OneEuro(self.smoothing.min_cutoff, self.smoothing.beta))
            quad = euro(ffhq_quad(face.landmarks), now)
            # Landmarks get their own One Euro: landmark filters warp and mask by them.
            smooth = self._euro_points.setdefault(face.track_id, OneEuro(self.smoothing.min_cutoff, self.smoothing.beta))
            points = smooth(face.landmarks, now)
            aligned.append(AlignedFace(face, quad, quad_matrix(quad, self.filter.input_size), points))
        return aligned

    def _timed(self, stage: str, fn, *args):  # noqa: ANN001, ANN202 - thin timing wrapper
        start = time.perf_counter()
        result = fn(*args)
        self.stage_s[stage] += time.perf_counter() - start
        return result
