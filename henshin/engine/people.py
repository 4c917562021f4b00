"""Where the people are: mediapipe's selfie segmentation, smoothed over time and feathered.

For ``scope=background`` filters: the frame is styled whole and put back only
outside the people. The segmentation network (it ships in the mediapipe wheel)
runs on a frame shrunk to ``width`` pixels; its person probability is smoothed
over time (an exponential average, restarted at every cut, so a mask never
mixes two shots; never below the current frame's, so a moving person is
always covered), thresholded, its holes filled, grown by ``grow`` and
feathered over ``feather`` beyond that (fractions of the frame's width), so
hair and shoulders stay untouched and the edge is soft and falls on the
background. On a person the weight is exactly 1, so the compositor keeps
those pixels' exact bytes.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from henshin.optional import import_mediapipe


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
        # with the first masker: a run without background scope never loads mediapipe
        mp = import_mediapipe("the people mask of scope=background (mediapipe's selfie segmentation)")

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
        # The average steadies the edge; the maximum with this frame keeps a moving person's leading
        # edge covered (the average lags it); where someone just left fades out over a few frames.
        return people_weight(np.maximum(self._average, probability), cfg, (w, h))

    def close(self) -> None:
        """Release mediapipe's graph."""
        self._segmenter.close()


def people_weight(probability: np.ndarray, config: PeopleConfig, size: tuple[int, int]) -> np.ndarray:
    """(h, w) person probability → (H, W) weight at ``size`` (w, h): thresholded, holes filled, grown, feathered.

    The weight is exactly 1 on a person and ``grow`` beyond, then falls to 0 over ``feather``
    (a smoothstep of the distance to the person): the soft edge lies on the background.
    """
    width = probability.shape[1]
    person = (probability > config.threshold).astype(np.uint8)
    # People are solid: a hole the network leaves inside one (a bright forehead, glasses) is filled.
    outlines, _ = cv2.findContours(person, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    cv2.drawContours(person, outlines, -1, 1, thickness=cv2.FILLED)
    distance = cv2.distanceTransform(1 - person, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)  # 0 on a person
    grow, feather = config.grow * width, max(config.feather * width, 1.0)
    t = np.clip((distance - grow) / feather, 0.0, 1.0)
    weight = 1.0 - t * t * (3.0 - 2.0 * t)
    if (weight.shape[1], weight.shape[0]) != tuple(size):
        weight = cv2.resize(weight, tuple(size), interpolation=cv2.INTER_LINEAR)
    return weight
