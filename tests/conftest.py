"""Shared fixtures: generated clips with known motion, and small helpers."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from henshin.samples import SampleSpec, background, portrait, write_sample

# Small enough to be quick on two cores, face large enough to be found reliably.
CLIP = SampleSpec(width=480, height=360, frames=36, fps=24, face_height=1.3)


@pytest.fixture(scope="session")
def clip(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray]:
    """A clip of the astronaut with known motion and an AAC tone; returns (path, affines)."""
    path = tmp_path_factory.mktemp("clips") / "face.mp4"
    affines = write_sample(path, CLIP)
    return path, affines


@pytest.fixture(scope="session")
def faceless_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A short clip of a plain gradient: no face anywhere."""
    path = tmp_path_factory.mktemp("clips") / "empty.mp4"
    image = background(CLIP.width, CLIP.height)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=CLIP.fps)
        stream.width, stream.height, stream.pix_fmt = CLIP.width, CLIP.height, "yuv420p"
        stream.options = {"crf": "0"}
        for i in range(8):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, CLIP.fps)
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return path


@pytest.fixture(scope="session")
def face_png(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The astronaut photo as a PNG."""
    import cv2

    path = tmp_path_factory.mktemp("images") / "astronaut.png"
    cv2.imwrite(str(path), cv2.cvtColor(portrait(), cv2.COLOR_RGB2BGR))
    return path


def decode_video(path: Path) -> tuple[list[np.ndarray], list[int], Fraction]:
    """All frames of a video as RGB arrays, with their pts and the stream time base."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames, pts = [], []
        for frame in container.decode(stream):
            frames.append(frame.to_ndarray(format="rgb24"))
            pts.append(frame.pts)
        return frames, pts, stream.time_base


def audio_seconds(path: Path) -> float:
    """Decoded audio duration in seconds (0 when there is no audio stream)."""
    with av.open(str(path)) as container:
        if not container.streams.audio:
            return 0.0
        stream = container.streams.audio[0]
        samples = sum(frame.samples for frame in container.decode(stream))
        return samples / stream.codec_context.sample_rate
