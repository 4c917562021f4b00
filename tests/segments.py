"""Helpers the distributed-conversion tests share: clips with known keyframes, packet listings."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from tests.conftest import decode_video


def reencode(src: Path, dst: Path, keyint: int) -> Path:
    """``src``'s frames (no audio) as H.264 with a keyframe every ``keyint`` frames and B-frames."""
    frames, pts, time_base = decode_video(src)
    with av.open(str(dst), "w") as out:
        stream = out.add_stream("libx264", rate=24)
        stream.width, stream.height, stream.pix_fmt = frames[0].shape[1], frames[0].shape[0], "yuv420p"
        stream.time_base = time_base
        stream.options = {"crf": "16", "preset": "veryfast",
                          "x264-params": f"keyint={keyint}:min-keyint={keyint}:scenecut=0:bframes=2"}
        for image, p in zip(frames, pts, strict=True):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts, frame.time_base = p, time_base
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return dst


def video_packets(path: Path) -> list[tuple[int, int, bool]]:
    """(pts, dts, keyframe) of every video packet, in file (decode) order."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return [(p.pts, p.dts, p.is_keyframe) for p in container.demux(stream) if p.size]


def frame_diffs(a: list[np.ndarray], b: list[np.ndarray]) -> list[float]:
    """Mean absolute difference of each pair of frames, in 8-bit levels."""
    return [float(np.abs(x.astype(np.int16) - y.astype(np.int16)).mean()) for x, y in zip(a, b, strict=True)]


def time_base_of(path: Path) -> Fraction:
    """The first video stream's time base."""
    with av.open(str(path)) as container:
        return container.streams.video[0].time_base


def jittered_clip(path: Path, sigma: float = 1.5, seed: int = 0) -> Path:
    """The sample clip's motion with the photo shaken by ``sigma`` pixels a frame: landmarks that need smoothing."""
    from henshin.samples import background, motion, portrait, render
    from tests.conftest import CLIP

    affines, light = motion(CLIP)
    affines = affines.copy()
    affines[..., 2] += np.random.default_rng(seed).normal(0, sigma, size=affines[..., 2].shape)
    photo, bg = portrait(), background(CLIP.width, CLIP.height)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=CLIP.fps)
        stream.width, stream.height, stream.pix_fmt = CLIP.width, CLIP.height, "yuv420p"
        stream.options = {"crf": "12"}
        for i in range(CLIP.frames):
            frame = av.VideoFrame.from_ndarray(render(CLIP, affines, light, i, photo, bg), format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, CLIP.fps)
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return path
