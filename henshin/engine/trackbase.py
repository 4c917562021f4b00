"""What the face tracker and its backends share: the config, a frame's update, a detection, the
backend protocol, and the brightening of dark pictures for the networks."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import cv2
import numpy as np

from henshin.types import Face


@dataclass
class TrackerConfig:
    """How faces are found and followed."""

    max_faces: int = 4
    detect_every: int = 15
    detect_size: int = 640
    small_faces: bool = True
    min_confidence: float = 0.5
    max_missing: int = 5
    # On the scheduled look for new faces (every ``detect_every`` frames): the whole frame and every
    # small-face tile at once (offline), or the whole frame and one tile in turn (live: nine detector
    # runs in one frame would be a latency spike every half second).
    sweep_tiles: bool = True
    # Live: the scheduled look for new faces, while every tracked face is held, runs in a helper thread
    # (its own detector) and what it finds joins at the next frame, so that frame does not wait for
    # the detector (two runs, whole frame and a tile: 2 x 17 ms on 2 cores). The first frame, a lost
    # face and a frame with no face search at once, as before.
    search_behind: bool = False
    # Which backend: ``mediapipe`` (its Python graphs, CPU) or ``torch`` (its networks in torch,
    # henshin.engine.torch_tracking, on ``device``, in ``dtype``: fp32, or fp16/bf16 on CUDA).
    kind: str = "mediapipe"
    device: str = "cpu"
    dtype: str = "fp32"
    # A face whose size (the landmarks' 3-D spread, which turning the head leaves alone) changes by
    # more than this factor from one frame to the next, or whose centre moves by more than
    # ``max_shift`` of that spread (about two thirds of the face's width; a fast pan moves a face
    # by a quarter), has jumped further than a head moves in a frame: a zoom cut the colour
    # histograms do not see. Its track ends and a fresh mesh finds the face again.
    max_scale_step: float = 1.2
    max_shift: float = 2.0
    # A step that breaks from the face's motion of the frame before by more than these (its size
    # changing by ``check_scale_step`` more, or its centre landing ``check_shift`` of its size off
    # the way it was going: a punch-in zoom of 1.15, a jump cut) is looked at again by a fresh mesh
    # framed by the new landmarks; where the two differ by more than ``check_agreement`` of the size
    # (a mesh and a fresh one agree to 0.02-0.04), the follow was fooled (a tracking mesh takes frames
    # to leave its old position) and the face goes on, in its track, from a fresh mesh. In the
    # samples, smooth motion breaks by at most 0.27 and 1.03 (a face swaying through its whole motion
    # in a second); the cuts that fooled the follow, by 0.43-0.89, the fresh look 0.19-1.0 off.
    check_scale_step: float = 1.06
    check_shift: float = 0.35
    check_agreement: float = 0.1


@dataclass(slots=True)
class TrackUpdate:
    """One frame's tracking: the faces, and the track ids that started or ended with this frame."""

    faces: list[Face]
    started: list[int] = field(default_factory=list)
    ended: list[int] = field(default_factory=list)


Box = tuple[float, float, float, float]  # x0, y0, x1, y1 in frame pixels
Rect = tuple[int, int, int, int]


@dataclass(slots=True)
class Detection:
    """A face the detector found: its box, and the eye centres (2, 2) where the backend gives them
    (the torch backend turns its region with them), in frame pixels."""

    box: Box
    eyes: np.ndarray | None = None


# Where a new mesh starts: a detection, or landmarks (478, 3) of the face a moment ago.
Seed = Detection | np.ndarray


class TrackerBackend(Protocol):
    """The detector and face mesh under ``FaceTracker``; every call takes a batch of items, each
    with the (prepared) frame it belongs to, and answers one result per item."""

    def prepare(self, image: np.ndarray) -> Any:
        """A frame (H, W, 3) uint8 RGB as the backend's networks read it."""

    def detect(self, frames: Sequence[Any], rects: Sequence[Rect]) -> list[list[Detection]]:
        """The faces in each rectangle of its frame."""

    def follow(
        self, frames: Sequence[Any], faces: Sequence[tuple[np.ndarray, Any]]
    ) -> list[np.ndarray | None]:
        """Each face's landmarks (478, 3) from its previous landmarks and state, or None when lost."""

    def start(
        self, frames: Sequence[Any], seeds: Sequence[Seed]
    ) -> list[tuple[np.ndarray, Any] | None]:
        """A new mesh at each seed: its landmarks and state, or None when no face is there."""

    def look(self, frames: Sequence[Any], seeds: Sequence[Seed]) -> list[np.ndarray | None]:
        """The landmarks a new mesh at each seed finds (as ``start``'s), or None; nothing is kept (a
        second look at a face, or a probe where a face jumped to)."""

    def release(self, state: Any) -> None:
        """Free a face's state (its track ended)."""

    def warm(self, faces: int) -> None:
        """Run the networks once on blank input and have what ``faces`` faces need ready, so that
        neither the first frame nor the first frame of a new face pays for set-up (live)."""

    def for_thread(self) -> TrackerBackend:
        """A backend whose ``detect`` may run in another thread while this one works (``search_behind``)."""

    def close(self) -> None:
        """Free the backend."""


DARK_LEVEL = 96  # a picture whose 99th percentile is below this is stretched for the networks


def brighten(image: np.ndarray) -> np.ndarray:
    """A dark (H, W, 3) uint8 picture stretched so its 99th percentile reaches twice ``DARK_LEVEL``.

    The detector and the mesh miss faces in the first frames of a fade from black;
    the stretch brings them back. Pictures that are not dark are returned as they are.
    """
    level = float(np.percentile(image[::4, ::4], 99))
    if level >= DARK_LEVEL or level < 1.0:
        return image
    return cv2.convertScaleAbs(image, alpha=2 * DARK_LEVEL / level)


def blank_frame(width: int) -> np.ndarray:
    """A black 16:9 frame ``width`` wide: what a backend's warm-up runs its detector on."""
    return np.zeros((width * 9 // 16, width, 3), np.uint8)


def landmark_box(landmarks: np.ndarray) -> Box:
    """(x0, y0, x1, y1) of landmarks (K, 2+) in frame pixels."""
    xy = landmarks[:, :2]
    (x0, y0), (x1, y1) = xy.min(0), xy.max(0)
    return float(x0), float(y0), float(x1), float(y1)
