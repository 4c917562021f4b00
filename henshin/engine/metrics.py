"""Temporal stability as the warping error (Lai et al., ECCV 2018, "Learning Blind Video Temporal Consistency").

Frame t−1 of a video is warped to frame t by the optical flow of the *input*
video, and compared with frame t over the pixels the flow can be trusted on
(not occluded: forward and backward flow agree, Sundaram et al. 2010), inside
a region of interest when one is given:

    E = mean over t of  Σ_p M_t(p)·|O_t(p) − warp(O_{t−1})(p)| / Σ_p M_t(p)

in 8-bit levels, averaged over the colour channels. Motion does not count (the
warp follows it), so what is left is change that is not motion: flicker,
shimmering strokes, jitter. The input's own error (warping the input by its
own flow) is the floor set by the flow's accuracy, lighting and noise; the
ratio output ÷ input is what the bench reports: 1 is as steady as the input.

The flow here is DIS at its ``medium`` preset on frames shrunk to at most
``FLOW_MAX_SIDE`` pixels, a better flow than the blending stage uses
(``fast``, smaller), so a blend is not judged by its own flow.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import cv2
import numpy as np

from henshin.engine.shots import CutDetector
from henshin.kernels.optflow import consistent, optical_flow, resize_flow, to_grey, warp_by_flow

FLOW_MAX_SIDE = 640
FLOW_PRESET = "medium"


class WarpingMeter:
    """The warping error of an output video and of its input, one frame pair at a time.

    mask: (H, W) weights in [0, 1] where it is measured (the face area, say);
    ``changed_only``: measure only where the output differs from the input in
    the current frame (what a filter touched; for runs where the face area is
    not known, such as ``convert --stats``). A pair of frames across a shot change
    (``henshin.engine.shots``) is not compared: no flow links two shots.
    """

    def __init__(self, mask: np.ndarray | None = None, changed_only: bool = False) -> None:
        self.weights = None if mask is None else np.asarray(mask, np.float32)
        self.changed_only = changed_only
        self.sums, self.pairs = np.zeros(2), 0
        self._before: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        self._cuts = CutDetector()

    def add(self, x: np.ndarray, y: np.ndarray, mask: np.ndarray | None = None) -> None:
        """The next input frame ``x`` and output frame ``y``, (H, W, 3) uint8; ``mask``: this frame's own region."""
        grey = _grey(x)
        if self._cuts(x):
            self._before = None
        if self._before is not None and self._before[1].shape == x.shape:
            backward, trust = _flow_back(grey, self._before[0], x.shape[:2])
            weights = self.weights if mask is None else np.asarray(mask, np.float32)
            if weights is not None:
                trust = trust * weights
            if self.changed_only:
                trust = trust * np.any(x != y, axis=-1)
            self.sums += [_error(x, self._before[1], backward, trust), _error(y, self._before[2], backward, trust)]
            self.pairs += 1
        self._before = (grey, x, y)

    def result(self) -> dict[str, Any]:
        """{"input", "output", "ratio"} in 8-bit levels (ratio None when the input's error is 0), and the pairs."""
        e_in, e_out = (self.sums / self.pairs) if self.pairs else (0.0, 0.0)
        return {"input": round(float(e_in), 4), "output": round(float(e_out), 4),
                "ratio": round(float(e_out / e_in), 4) if e_in > 0 else None, "pairs": self.pairs}


def warping_errors(inputs: Iterable[np.ndarray], outputs: Iterable[np.ndarray],
                   mask: np.ndarray | Iterable[np.ndarray] | None = None) -> dict[str, Any]:
    """The warping error of ``outputs`` and of ``inputs``, both by the inputs' flow, and their ratio.

    inputs/outputs: (H, W, 3) uint8 frames in step; mask: (H, W) weights in [0, 1]
    (the face area, say), or one such mask per frame. Returns {"input", "output",
    "ratio", "pairs"} (ratio None when the input's error is 0); errors are 0.0 for
    fewer than two frames.
    """
    if mask is None or isinstance(mask, np.ndarray):
        meter, masks = WarpingMeter(mask), None
    else:
        meter, masks = WarpingMeter(), iter(mask)
    for x, y in zip(inputs, outputs, strict=True):
        meter.add(x, y, None if masks is None else next(masks))
    return meter.result()


class WarpingSink:
    """A sink that measures the warping error of what it is given against each frame's input (``--stats``)."""

    repeats = False

    def __init__(self) -> None:
        self.meter = WarpingMeter(changed_only=True)

    def write(self, frame: Any, image: np.ndarray) -> None:
        """One output frame; ``frame.image`` is its input."""
        self.meter.add(frame.image, image)

    def close(self) -> None:
        """Nothing to release."""

    def abort(self) -> None:
        """Nothing to release."""


def _grey(image: np.ndarray) -> np.ndarray:
    h, w = image.shape[:2]
    scale = min(1.0, FLOW_MAX_SIDE / max(h, w))
    return to_grey(image, (max(1, round(w * scale)), max(1, round(h * scale))))


def _flow_back(grey: np.ndarray, grey_before: np.ndarray, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Flow from frame t to t−1 and the (H, W) mask of pixels it can be trusted on, at full size."""
    backward = optical_flow(grey, grey_before, FLOW_PRESET)
    forward = optical_flow(grey_before, grey, FLOW_PRESET)
    trust = consistent(backward, forward)
    h, w = shape
    if trust.shape != (h, w):
        trust = cv2.resize(trust, (w, h), interpolation=cv2.INTER_NEAREST)
    return resize_flow(backward, (w, h)), trust


def _error(now: np.ndarray, before: np.ndarray, backward: np.ndarray, trust: np.ndarray) -> float:
    warped = warp_by_flow(before.astype(np.float32), backward)
    diff = np.abs(now.astype(np.float32) - warped).mean(-1)
    total = float(trust.sum())
    return float((diff * trust).sum() / total) if total > 0 else 0.0
