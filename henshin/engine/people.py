"""Where the people are: mediapipe's selfie segmentation, smoothed over time and feathered.

For ``scope=background`` filters: the frame is styled whole and put back only
outside the people. The segmentation network (it ships in the mediapipe wheel)
runs on a frame shrunk to ``width`` pixels; its person probability is smoothed
over time (an exponential average, restarted at every cut, so a mask never
mixes two shots), thresholded, grown by ``grow`` and feathered by ``feather``
(fractions of the frame's width) so hair and shoulders stay untouched and the
edge is soft. Well inside a person the weight is exactly 1, so the compositor
keeps those pixels' exact bytes.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import mediapipe as mp
import numpy as np


@dataclass(frozen=True)
class PeopleConfig:
    """width: the segmentation's working width; smooth: weight of the new frame in the running
    average (1: no smoothing); threshold: person probability; grow/feather: fractions of the width."""

    width: int = 320
    smooth: float = 0.5
    threshold: float = 0.5
    grow: float = 0.015
    feather: float = 0.02


class PeopleMasker:
    """Per frame, an (H, W) float32 weight of the people in it: 1 on a person, 0 on the background."""

    def __init__(self, config: PeopleConfig | None = None) -> None:
        self.config = config or PeopleConfig()
        # model 1 is the landscape model (256×144 input): faster, made for video calls.
        self._segmenter = mp.solutions.selfie_segmentation.SelfieSegmentation(model_selection=1)
        self._average: np.ndarray | None = None

    def __call__(self, image: np.ndarray, cut: bool = False) -> np.ndarray:
        """The people weight of ``image`` ((H, W, 3) uint8 RGB); ``cut``: the frame starts a new shot."""
        cfg = self.config
        h, w = image.shape[:2]
        scale = min(1.0, cfg.width / w)
        small = cv2.resize(image, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
        result = self._segmenter.process(np.ascontiguousarray(small))
        probability = np.asarray(result.segmentation_mask, np.float32)
        if cut or self._average is None or self._average.shape != probability.shape:
            self._average = probability
        else:
            self._average = self._average + (probability - self._average) * cfg.smooth
        return people_weight(self._average, cfg, (w, h))

    def reset(self) -> None:
        """Forget the running average (a new stream)."""
        self._average = None

    def close(self) -> None:
        """Release mediapipe's graph."""
        self._segmenter.close()


def people_weight(probability: np.ndarray, config: PeopleConfig, size: tuple[int, int]) -> np.ndarray:
    """(h, w) person probability → (H, W) weight at ``size`` (w, h): thresholded, grown, feathered."""
    width = probability.shape[1]
    person = (probability > config.threshold).astype(np.uint8)
    grow = max(1, round(config.grow * width))
    person = cv2.dilate(person, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * grow + 1, 2 * grow + 1)))
    sigma = max(0.5, config.feather * width / 2)
    soft = cv2.GaussianBlur(person.astype(np.float32), (0, 0), sigma)
    # A smoothstep from 0.05 to 0.95: exactly 0 far outside and exactly 1 well inside a person.
    t = np.clip((soft - 0.05) / 0.9, 0.0, 1.0)
    weight = t * t * (3.0 - 2.0 * t)
    if (weight.shape[1], weight.shape[0]) != tuple(size):
        weight = cv2.resize(weight, tuple(size), interpolation=cv2.INTER_LINEAR)
    return weight
