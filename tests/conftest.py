"""Shared fixtures: generated clips with known motion, and small helpers."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bench.common import FramesSource
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
    import av  # imported where used, so GPU-only test runs collect without PyAV

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


@pytest.fixture(scope="session")
def two_faces_png(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two faces side by side (face 0 on the left: faces of one frame are numbered left to right)."""
    import cv2

    from henshin.samples import motion, render

    spec = SampleSpec(width=640, height=240, frames=1, faces=2, face_height=1.1)
    affines, light = motion(spec)
    image = render(spec, affines, light, 0, portrait(), background(spec.width, spec.height))
    path = tmp_path_factory.mktemp("two") / "two.png"
    cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    return path


def decode_video(path: Path) -> tuple[list[np.ndarray], list[int], Fraction]:
    """All frames of a video as RGB arrays, with their pts and the stream time base."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames, pts = [], []
        for frame in container.decode(stream):
            frames.append(frame.to_ndarray(format="rgb24"))
            pts.append(frame.pts)
        return frames, pts, stream.time_base


def audio_seconds(path: Path) -> float:
    """Decoded audio duration in seconds (0 when there is no audio stream)."""
    import av

    with av.open(str(path)) as container:
        if not container.streams.audio:
            return 0.0
        stream = container.streams.audio[0]
        samples = sum(frame.samples for frame in container.decode(stream))
        return samples / stream.codec_context.sample_rate


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


class LockstepSource(FramesSource):
    """A camera the run keeps up with: the next frame is captured once the last one reached the sink."""

    def __init__(self, images: list[np.ndarray], sink: KeepSink) -> None:
        super().__init__(images)
        self.sink = sink

    def __iter__(self):
        import time

        for i, frame in enumerate(super().__iter__()):
            frame.captured_at = time.monotonic_ns()
            yield frame
            deadline = time.monotonic() + 30
            while len(self.sink.images) <= i and time.monotonic() < deadline:
                time.sleep(0.002)


def forbid(monkeypatch: pytest.MonkeyPatch, why: str, *targets: tuple[Any, str]) -> None:
    """Replace each (module, name) with a call that fails the test with ``why``: work that must not start."""

    def refuse(*args, **kwargs):
        raise AssertionError(why)

    for module, name in targets:
        monkeypatch.setattr(module, name, refuse)


def stages_for(chain: str, smooth: int | None = 4, faces: dict[int, str] | None = None, tracker=None, **params: str):
    """FaceStages over a chain: a centred window of ``smooth`` frames, or One Euro live (``smooth=None``)."""
    from henshin.engine.chains import ChainRequest, FilterGraph
    from henshin.engine.smoothing import CentredSmoother, OneEuroSmoother
    from henshin.engine.stages import FaceStages

    graph = FilterGraph(ChainRequest(chain, faces or {}, params))
    return FaceStages(graph, OneEuroSmoother() if smooth is None else CentredSmoother(smooth), tracker)


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

# -- network checkpoints in the official layouts (seeded random weights; see tests/layouts.py) --------

NARROW_CHANNELS = {4: 32, 8: 32, 16: 16, 32: 16, 64: 8}  # a 64-px generator in rosinality's layout, narrowed
NARROW_DEPTHS = (16, 16, 32, 32)  # e4e's IR-SE50 layout at a fraction of its widths: 32-d styles


@pytest.fixture(scope="session")
def rosinality_256(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """rosinality's converted layout at 256 px, channel multiplier 1 (14 W+ rows of 512)."""
    import torch
    from layouts import rosinality_channels, stylegan2_state

    path = tmp_path_factory.mktemp("stylegan2") / "stylegan2-256.pt"
    latent_avg = torch.randn(512, generator=torch.Generator().manual_seed(5))
    torch.save({"g_ema": stylegan2_state(256, rosinality_channels(1), seed=3), "latent_avg": latent_avg}, path)
    return path


@pytest.fixture(scope="session")
def narrow_generator(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A rosinality training file ({"g", "d", "g_ema", "g_optim", "latent_avg"}) of a narrow 64-px generator."""
    import torch
    from layouts import stylegan2_state

    path = tmp_path_factory.mktemp("stylegan2") / "narrow-64.pt"
    g_ema = stylegan2_state(64, NARROW_CHANNELS, n_mlp=3, style_dim=32, seed=4)
    torch.save({"g": {k: v + 1 for k, v in g_ema.items()}, "d": {"convs.0.0.weight": torch.zeros(8, 3, 1, 1)},
                "g_ema": g_ema, "g_optim": {"state": {}, "param_groups": [{"lr": 0.002}]},
                "latent_avg": torch.ones(32)}, path)
    return path


@pytest.fixture(scope="session")
def e4e_official(tmp_path_factory: pytest.TempPathFactory, rosinality_256: Path) -> Path:
    """e4e's released layout, saved from cuda:0, for a 256-px decoder: the full IR-SE50 and 14 style blocks.

    Same-shaped convolution weights share one random tensor (each bias is its own), so the
    file stays small; the decoder is ``rosinality_256``'s generator.
    """
    import torch
    from layouts import e4e_checkpoint, e4e_encoder_state, storages_tagged

    path = tmp_path_factory.mktemp("e4e") / "e4e_ffhq_encode.pt"
    decoder = torch.load(rosinality_256, weights_only=True)["g_ema"]
    latent_avg = torch.randn(1, 512, generator=torch.Generator().manual_seed(6)).repeat(14, 1)
    with storages_tagged("cuda:0"):
        torch.save(e4e_checkpoint(e4e_encoder_state(14, share=True), decoder, 256, latent_avg), path)
    return path


@pytest.fixture(scope="session")
def e4e_narrow(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """e4e's layout with narrow widths, options as an argparse.Namespace (as forks save them), 64-px decoder."""
    import torch
    from layouts import e4e_checkpoint, e4e_encoder_state, stylegan2_state

    path = tmp_path_factory.mktemp("e4e") / "e4e-narrow.pt"
    latent_avg = torch.randn(10, 32, generator=torch.Generator().manual_seed(7))
    decoder = stylegan2_state(64, NARROW_CHANNELS, n_mlp=3, style_dim=32, seed=8)
    torch.save(e4e_checkpoint(e4e_encoder_state(10, NARROW_DEPTHS, seed=9), decoder, 64, latent_avg,
                              namespace=True), path)
    return path


NARROW_GNR = {4: 32, 8: 32, 16: 32, 32: 16, 64: 16, 128: 8, 256: 8}  # GANsNRoses' layout, narrowed


@pytest.fixture(scope="session")
def gnr_training_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """GANsNRoses' training checkpoint layout (train.py's torch.save) of a narrow generator pair."""
    import torch
    from layouts import gnr_generator_state

    path = tmp_path_factory.mktemp("gnr") / "ck.pt"
    a2b = gnr_generator_state(NARROW_GNR, style_dim=32, seed=11)
    b2a = gnr_generator_state(NARROW_GNR, style_dim=32, seed=12)
    torch.save({"G_A2B": a2b, "G_B2A": b2a, "G_A2B_ema": a2b, "G_B2A_ema": b2a,
                "D_A": {"l_branch.0.0.weight": torch.zeros(8, 3, 1, 1)}, "D_B": {}, "D_L": {},
                "G_optim": {"state": {}, "param_groups": [{"lr": 0.002, "betas": (0.0, 0.99)}]},
                "D_optim": {"state": {}, "param_groups": []}, "iter": 300000}, path)
    return path



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


def face_box(image: np.ndarray, margin: float = 0.0) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1) around the one face mediapipe finds in an RGB image, grown by ``margin`` of its size."""
    from henshin.engine.tracking import FaceTracker, TrackerConfig

    tracker = FaceTracker(TrackerConfig())
    try:
        (face,) = tracker.track(image).faces
    finally:
        tracker.close()
    (x0, y0), (x1, y1) = face.landmarks[:, :2].min(0), face.landmarks[:, :2].max(0)
    dx, dy = margin * (x1 - x0), margin * (y1 - y0)
    h, w = image.shape[:2]
    return max(0, int(x0 - dx)), max(0, int(y0 - dy)), min(w, int(x1 + dx) + 1), min(h, int(y1 + dy) + 1)


def inside(box: tuple[int, int, int, int], shape: tuple[int, ...]) -> np.ndarray:
    """A boolean (H, W) mask that is True inside ``box``."""
    x0, y0, x1, y1 = box
    mask = np.zeros(shape[:2], bool)
    mask[y0:y1, x0:x1] = True
    return mask


def frame_from_crop_matrix(image: np.ndarray, size: int = 256) -> np.ndarray:
    """The 2×3 matrix taking the FFHQ crop (``size`` px) of the image's one face back to frame pixels."""
    import cv2

    from henshin.engine.align import ffhq_quad, quad_matrix
    from henshin.engine.tracking import FaceTracker, TrackerConfig

    tracker = FaceTracker(TrackerConfig())
    try:
        (face,) = tracker.track(image).faces
    finally:
        tracker.close()
    return cv2.invertAffineTransform(quad_matrix(ffhq_quad(face.landmarks), size))


def crop_masks(image: np.ndarray, margin: int) -> tuple[np.ndarray, np.ndarray]:
    """Masks of the 256-px FFHQ crop square shrunk and grown by ``margin`` crop pixels, from the image's face."""
    import cv2

    inverse = frame_from_crop_matrix(image)
    masks = []
    for lo, hi in ((margin, 256 - margin), (-margin, 256 + margin)):
        corners = np.array([[lo, lo, 1], [hi, lo, 1], [hi, hi, 1], [lo, hi, 1]], np.float64) @ inverse.T
        mask = np.zeros(image.shape[:2], np.uint8)
        cv2.fillConvexPoly(mask, np.round(corners).astype(np.int32), 1)
        masks.append(mask.astype(bool))
    return masks[0], masks[1]
