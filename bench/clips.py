"""Inputs the scenarios share: generated clips with known motion, the face area, the warping error.

Clips are ``henshin.samples`` renders of the astronaut photo, so every
machine benchmarks the same pictures; with ``faces=N`` the face is tiled N
times. Because the motion is known, so is where the face is in every frame,
which is where temporal stability (the warping error, ``henshin.engine.metrics``)
is measured.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import cv2
import numpy as np

from henshin.engine.metrics import warping_errors
from henshin.samples import SampleSpec, write_sample

# The face inside the 512×512 astronaut photo (x 150–300, y 50–220), as the tests use it.
PHOTO_FACE_BOX = np.array([[150, 50], [300, 50], [300, 220], [150, 220]], np.float64)


@dataclass(frozen=True)
class Clip:
    """A generated clip on disk and what is known about it."""

    path: Path
    spec: SampleSpec
    affines: np.ndarray  # (T, F, 2, 3) photo → frame, per frame and face

    @property
    def label(self) -> str:
        """``1280x720`` (and the face count when it is not one)."""
        size = f"{self.spec.width}x{self.spec.height}"
        return size if self.spec.faces == 1 else f"{size} {self.spec.faces} faces"

    def describe(self) -> dict[str, Any]:
        """The clip's settings, for the JSON."""
        s = self.spec
        return {"width": s.width, "height": s.height, "frames": s.frames, "fps": s.fps, "faces": s.faces}


def make_clip(folder: Path, width: int, height: int, frames: int, faces: int = 1, fps: int = 30,
              audio: bool = True, light: float = 0.15) -> Clip:
    """Write (or reuse) a sample clip of the astronaut into ``folder`` (``light``: its lighting swing, 0 for none)."""
    spec = SampleSpec(width=width, height=height, frames=frames, fps=fps, faces=faces, audio=audio, light=light)
    path = folder / (f"clip-{width}x{height}-{frames}f-{faces}faces{'' if audio else '-silent'}"
                     f"{'' if light == 0.15 else f'-light{light:g}'}.mp4")
    affines = write_sample(path, spec) if not path.exists() else _affines(spec)
    return Clip(path, spec, affines)


def _affines(spec: SampleSpec) -> np.ndarray:
    from henshin.samples import motion

    return motion(spec)[0]


def face_boxes(clip: Clip) -> Iterator[np.ndarray]:
    """Per frame, an (H, W) float32 mask of where the faces are in that frame."""
    for per_frame in clip.affines:
        area = np.zeros((clip.spec.height, clip.spec.width), np.uint8)
        for matrix in per_frame:
            corners = PHOTO_FACE_BOX @ matrix[:, :2].T + matrix[:, 2]
            cv2.fillConvexPoly(area, np.round(corners).astype(np.int32), 1)
        yield area.astype(np.float32)


def face_area(clip: Clip) -> np.ndarray:
    """(H, W) float32 mask: where any face is in any frame of the clip."""
    area = np.zeros((clip.spec.height, clip.spec.width), np.uint8)
    for per_frame in clip.affines:
        for matrix in per_frame:
            corners = PHOTO_FACE_BOX @ matrix[:, :2].T + matrix[:, 2]
            cv2.fillConvexPoly(area, np.round(corners).astype(np.int32), 1)
    return area.astype(np.float32)


def video_frames(path: Path) -> Iterator[np.ndarray]:
    """Every frame of a video file, (H, W, 3) uint8 RGB."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for frame in container.decode(stream):
            yield frame.to_ndarray(format="rgb24")


def warping_of(clip: Clip, output: Path, whole_frame: bool = False) -> dict[str, Any]:
    """Warping error of the output inside each frame's face boxes (or the whole frame), next to the input's."""
    return warping_errors(video_frames(clip.path), video_frames(output), None if whole_frame else face_boxes(clip))


def mean_abs_diff(a: Iterator[np.ndarray], b: Iterator[np.ndarray]) -> dict[str, Any]:
    """Mean absolute difference of two frame sequences in 8-bit levels: over all, worst frame, count."""
    per_frame = [float(np.abs(x.astype(np.int16) - y.astype(np.int16)).mean())
                 for x, y in zip(a, b, strict=False)]
    return {"mean": round(float(np.mean(per_frame)), 3) if per_frame else None,
            "worst_frame": round(max(per_frame), 3) if per_frame else None, "frames": len(per_frame)}
