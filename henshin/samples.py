"""Sample clips with known motion: a real face photo animated into a video.

``skimage.data.astronaut()`` (a public-domain NASA portrait that ships inside
scikit-image) is moved, turned, scaled and relit along smooth paths over a plain
background, and a tone is muxed as the audio track. The per-frame affine of the
photo is returned, so tests and benchmarks know where the face is.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

if TYPE_CHECKING:
    import av


@dataclass(frozen=True)
class SampleSpec:
    """What to generate."""

    width: int = 640
    height: int = 480
    frames: int = 48
    fps: int = 24
    faces: int = 1
    face_height: float = 0.8  # photo height as a fraction of the frame (divided per face)
    shift: float = 0.08  # peak horizontal travel as a fraction of the frame width
    rotate_deg: float = 8.0
    scale: float = 0.08
    light: float = 0.15
    audio: bool = True
    audio_rate: int = 44100


def portrait() -> np.ndarray:
    """The astronaut photo, (512, 512, 3) uint8 RGB."""
    from skimage import data

    return data.astronaut()


def motion(spec: SampleSpec) -> tuple[np.ndarray, np.ndarray]:
    """Per frame, per face: photo→frame 2×3 affines (T, F, 2, 3) and light gains (T,)."""
    photo = 512.0
    cols = int(np.ceil(np.sqrt(spec.faces)))
    rows = int(np.ceil(spec.faces / cols))
    cell_w, cell_h = spec.width / cols, spec.height / rows
    base = spec.face_height * min(cell_h, cell_w * 1.2) / photo
    t = np.arange(spec.frames) / max(spec.frames - 1, 1)
    phase = 2 * np.pi * t
    dx = spec.shift * spec.width * np.sin(phase) / cols
    angle = np.deg2rad(spec.rotate_deg) * np.sin(2 * phase)
    scale = base * (1 + spec.scale * np.sin(phase + 1.0))
    light = 1 + spec.light * np.sin(3 * phase)
    out = np.empty((spec.frames, spec.faces, 2, 3), np.float64)
    for f in range(spec.faces):
        cx = (f % cols + 0.5) * cell_w
        cy = (f // cols + 0.5) * cell_h
        for i in range(spec.frames):
            c, s = np.cos(angle[i]) * scale[i], np.sin(angle[i]) * scale[i]
            # rotate+scale about the photo centre, then put that centre at the cell centre
            out[i, f] = [[c, -s, cx + dx[i] - (c * 256 - s * 256)],
                         [s, c, cy - (s * 256 + c * 256)]]
    return out, light


def background(width: int, height: int) -> np.ndarray:
    """A soft two-colour gradient, (H, W, 3) uint8; no structure a detector could call a face."""
    gy, gx = np.mgrid[0:height, 0:width].astype(np.float32)
    g = (gx / max(width, 1) * 0.6 + gy / max(height, 1) * 0.4)[..., None]
    a, b = np.array([40, 70, 90], np.float32), np.array([150, 130, 110], np.float32)
    return (a * (1 - g) + b * g).astype(np.uint8)


def render(spec: SampleSpec, affines: np.ndarray, light: np.ndarray, index: int,
           photo: np.ndarray, bg: np.ndarray) -> np.ndarray:
    """Frame ``index`` of the clip, (H, W, 3) uint8 RGB."""
    frame = bg.astype(np.float32)
    ones = np.ones(photo.shape[:2], np.float32)
    for matrix in affines[index]:
        warped = cv2.warpAffine(photo, matrix, (spec.width, spec.height), flags=cv2.INTER_LINEAR)
        cover = cv2.warpAffine(ones, matrix, (spec.width, spec.height), flags=cv2.INTER_LINEAR)[..., None]
        frame = frame * (1 - cover) + warped.astype(np.float32) * light[index] * cover
    return np.clip(frame + 0.5, 0, 255).astype(np.uint8)


def write_sample(path: str | Path, spec: SampleSpec = SampleSpec()) -> np.ndarray:
    """Write the clip (H.264, plus an AAC tone when ``spec.audio``); return the affines (T, F, 2, 3)."""
    import av  # only writing needs PyAV: rendering frames in memory does not

    affines, light = motion(spec)
    photo, bg = portrait(), background(spec.width, spec.height)
    with av.open(str(path), mode="w") as out:
        video = out.add_stream("libx264", rate=spec.fps)
        video.width, video.height, video.pix_fmt = spec.width, spec.height, "yuv420p"
        video.options = {"crf": "12", "preset": "veryfast"}
        audio = out.add_stream("aac", rate=spec.audio_rate, layout="mono") if spec.audio else None
        for i in range(spec.frames):
            frame = av.VideoFrame.from_ndarray(render(spec, affines, light, i, photo, bg), format="rgb24")
            frame.pts = i
            frame.time_base = Fraction(1, spec.fps)
            out.mux(video.encode(frame))
        out.mux(video.encode(None))
        if audio is not None:
            _write_tone(out, audio, spec.frames / spec.fps, spec.audio_rate)
    return affines


def _write_tone(out: av.container.OutputContainer, stream: av.audio.stream.AudioStream,
                seconds: float, rate: int) -> None:
    import av

    n = int(round(seconds * rate))
    t = np.arange(n) / rate
    tone = (0.2 * np.sin(2 * np.pi * 440 * t) * (1 + 0.5 * np.sin(2 * np.pi * 2 * t))).astype(np.float32)
    chunk = 1024
    for start in range(0, n, chunk):
        part = tone[start:start + chunk][None]
        frame = av.AudioFrame.from_ndarray(part, format="fltp", layout="mono")
        frame.sample_rate, frame.pts, frame.time_base = rate, start, Fraction(1, rate)
        out.mux(stream.encode(frame))
    out.mux(stream.encode(None))
