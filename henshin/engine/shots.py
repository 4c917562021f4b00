"""Shot changes: a cheap cut detector on colour histograms of downscaled frames.

Each frame is shrunk to a thumbnail, divided by its own mean brightness (so a
fade or an exposure change, which scale every pixel alike, leaves it as it
was), and described by a histogram per colour channel. A cut is a histogram
distance to the previous frame above ``threshold`` (half the L1 distance,
averaged over the channels: 0 for the same colours, 1 for no colour in common),
at least ``min_shot`` frames after the last cut, so a flash or a fast pan does
not chop a shot into pieces. Near-black frames (the middle of a fade) are
never compared: the frame after them is compared with the last one seen before
them, so a fade out and in to another scene is still a cut.

The stages end every track at a cut: the smoothing windows, the filters'
per-face state and the temporal blending restart with the new shot.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from henshin.errors import OptionError

DARK_MEAN = 12.0  # a thumbnail darker than this (mean 8-bit level) is not compared


@dataclass(frozen=True)
class CutConfig:
    """threshold: histogram distance (0..1) that counts as a cut, 0 turns detection off;
    min_shot: the fewest frames in a shot; width: thumbnail width in pixels; bins: per channel."""

    threshold: float = 0.25
    min_shot: int = 8
    width: int = 64
    bins: int = 16

    def __post_init__(self) -> None:
        if not 0.0 <= self.threshold <= 1.0:
            raise OptionError(f"--cut-threshold expects a value from 0 to 1 (0 turns cut detection off), "
                              f"got {self.threshold:g}.")
        if self.min_shot < 1:
            raise OptionError(f"--min-shot expects a whole number of at least 1, got {self.min_shot}.")

    @property
    def enabled(self) -> bool:
        """Whether cuts are looked for at all."""
        return self.threshold > 0


class CutDetector:
    """Says which frames start a new shot; call it on every frame in order."""

    def __init__(self, config: CutConfig | None = None) -> None:
        self.config = config or CutConfig()
        self._reference: np.ndarray | None = None
        self._since_cut = 0

    def __call__(self, image: np.ndarray) -> bool:
        """Whether ``image`` ((H, W, 3) uint8) is the first frame of a new shot (never the stream's first)."""
        cfg = self.config
        self._since_cut += 1
        if not cfg.enabled:
            return False
        histogram = colour_histogram(image, cfg.width, cfg.bins)
        if histogram is None:  # near black: nothing to compare
            return False
        reference, self._reference = self._reference, histogram
        if reference is None:
            self._since_cut = 0
            return False
        if histogram_distance(reference, histogram) > cfg.threshold and self._since_cut >= cfg.min_shot:
            self._since_cut = 0
            return True
        return False


def colour_histogram(image: np.ndarray, width: int = 64, bins: int = 16) -> np.ndarray | None:
    """(3, bins) per-channel histograms of a brightness-normalised thumbnail, each summing to 1; None when near black."""
    h, w = image.shape[:2]
    step = max(1, w // (width * 4))  # a strided view first: INTER_AREA over the whole frame costs more than the rest
    view = image[::step, ::step]
    side = (width, max(1, round(width * h / w)))
    small = cv2.resize(view, side, interpolation=cv2.INTER_AREA).astype(np.float32)
    mean = float(small.mean())
    if mean < DARK_MEAN:
        return None
    # Levels relative to the mean: a fade (every pixel times a gain) does not move them.
    relative = small.reshape(-1, 3) * (1.0 / mean)
    top = 3.0
    index = np.minimum((relative * (bins / top)).astype(np.int32), bins - 1)
    out = np.stack([np.bincount(index[:, c], minlength=bins) for c in range(3)]).astype(np.float32)
    return out / out.sum(1, keepdims=True)


def histogram_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Half the L1 distance of two (3, bins) histograms, averaged over channels: 0 same, 1 disjoint."""
    return float(np.abs(a - b).sum() / (2 * a.shape[0]))
