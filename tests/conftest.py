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


class FramesSource:
    """A list of images as a source at 24 fps (what the schedulers read)."""

    def __init__(self, images: list[np.ndarray], fps: int = 24) -> None:
        self.images = images
        self.height, self.width = images[0].shape[:2]
        self.frame_rate, self.time_base = Fraction(fps), Fraction(1, fps)
        self.frame_count, self.path = len(images), None

    def __iter__(self):
        from henshin.types import Frame

        for i, image in enumerate(self.images):
            yield Frame(image, i, i, self.time_base)

    def close(self) -> None:
        pass


class KeepSink:
    """A sink that keeps what it gets (and takes live repeats)."""

    repeats = True

    def __init__(self) -> None:
        self.images: list[np.ndarray] = []
        self.frames: list = []
        self.closed = self.aborted = False

    def write(self, frame, image: np.ndarray) -> None:
        self.frames.append(frame)
        self.images.append(image)

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = True


def stages_for(chain: str, smooth: int | None = 4, faces: dict[int, str] | None = None, **params: str):
    """FaceStages over a chain: a centred window of ``smooth`` frames, or One Euro live (``smooth=None``)."""
    from henshin.engine.chains import ChainRequest, FilterGraph
    from henshin.engine.smoothing import CentredSmoother, OneEuroSmoother
    from henshin.engine.stages import FaceStages

    graph = FilterGraph(ChainRequest(chain, faces or {}, params))
    return FaceStages(graph, OneEuroSmoother() if smooth is None else CentredSmoother(smooth))


def run_offline_frames(images: list[np.ndarray], chain: str, smooth: int = 4, **params: str) -> list[np.ndarray]:
    """Images through a chain with the offline scheduler; the output images."""
    from henshin.engine.offline import OfflineConfig, run_offline

    stages = stages_for(chain, smooth, **params)
    sink = KeepSink()
    try:
        run_offline(FramesSource(images), stages, sink, OfflineConfig(progress=False))
    finally:
        stages.close()
        stages.graph.close()
    return sink.images


@pytest.fixture(scope="session")
def xscreen():
    """A virtual X screen (Xvfb) for window tests; skipped, saying what to install, where the tools are missing."""
    import sys

    from tests.xscreen import INSTALL, VirtualScreen, missing_tools

    if not sys.platform.startswith("linux"):
        pytest.skip("window tests run under Xvfb, on Linux")
    missing = missing_tools()
    if missing:
        pytest.skip(f"window tests need {', '.join(missing)}: {INSTALL}")
    screen = VirtualScreen()
    yield screen
    screen.close()
