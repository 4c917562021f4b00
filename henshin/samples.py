"""Sample clips with known motion: a real face photo animated into a video.

``skimage.data.astronaut()`` (a public-domain NASA portrait that ships inside
scikit-image) is moved, turned, scaled and relit along smooth paths over a plain
background, and a tone is muxed as the audio track. The per-frame affine of the
photo is returned, so tests and benchmarks know where the face is. A shots
clip (``ShotsSpec``) fades in from black and cuts hard to other backgrounds,
face positions and sizes, then zooms in on the same face, for the tracker's
recall, shot changes and zoom cuts.
"""

from __future__ import annotations

from collections.abc import Iterable
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


def background(width: int, height: int, a: tuple[int, int, int] = (40, 70, 90),
               b: tuple[int, int, int] = (150, 130, 110)) -> np.ndarray:
    """A soft gradient from colour ``a`` to ``b``, (H, W, 3) uint8; no structure a detector could call a face."""
    gy, gx = np.mgrid[0:height, 0:width].astype(np.float32)
    g = (gx / max(width, 1) * 0.6 + gy / max(height, 1) * 0.4)[..., None]
    ca, cb = np.array(a, np.float32), np.array(b, np.float32)
    return (ca * (1 - g) + cb * g).astype(np.uint8)


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


def render_frames(spec: SampleSpec, count: int | None = None) -> list[np.ndarray]:
    """The clip's first ``count`` frames (all of them by default) in memory, each (H, W, 3) uint8 RGB."""
    affines, light = motion(spec)
    photo, bg = portrait(), background(spec.width, spec.height)
    return [render(spec, affines, light, i, photo, bg) for i in range(spec.frames if count is None else count)]


def write_sample(path: str | Path, spec: SampleSpec = SampleSpec()) -> np.ndarray:
    """Write the clip (H.264, plus an AAC tone when ``spec.audio``); return the affines (T, F, 2, 3)."""

    affines, light = motion(spec)
    photo, bg = portrait(), background(spec.width, spec.height)
    frames = (render(spec, affines, light, i, photo, bg) for i in range(spec.frames))
    _write_frames(path, frames, spec.width, spec.height, spec.fps, spec.audio_rate if spec.audio else 0)
    return affines


# -- a clip with a fade from black and hard cuts --------------------------------------------

# Per shot: where the face is (centre as fractions of the frame), the photo's height as a
# fraction of the frame's, and the background's two colours: each cut moves the face,
# changes its size and changes every background pixel.
# The moves are small enough that a tracker following the face inside its last region would
# carry the track over the cut (what the shot-change detection must prevent).
SHOT_LOOKS = (
    ((0.42, 0.50), 0.95, (40, 70, 90), (150, 130, 110)),
    ((0.56, 0.55), 0.80, (150, 40, 40), (240, 200, 60)),
    ((0.46, 0.44), 1.05, (20, 110, 40), (120, 220, 200)),
    ((0.46, 0.44), 1.05, (20, 110, 40), (120, 220, 200)),
)
# Shots that are a zoom cut: shot k is shot k-1's framing scaled by ``factor`` about a frame point
# (fractions of the frame; here one that keeps the forehead in frame), on the same background.
# The colours hardly change, so a histogram cut detector does not see it: the tracker must.
ZOOM_CUTS = {3: (1.6, (0.41, 0.09))}


@dataclass(frozen=True)
class ShotsSpec:
    """A clip of several shots of the astronaut: a fade from black, then hard cuts.

    shots: frames in each shot (at most ``len(SHOT_LOOKS)``; the fourth is a zoom
    cut, see ``ZOOM_CUTS``); fade: frames of the fade from black at the start
    (frame 0 is black, frame ``fade`` at full light); within a shot the face
    drifts and turns slowly.
    """

    width: int = 640
    height: int = 480
    fps: int = 24
    shots: tuple[int, ...] = (24, 16, 16, 16)
    fade: int = 6
    drift: float = 0.04  # peak horizontal travel inside a shot, fraction of the width
    rotate_deg: float = 5.0
    audio: bool = False
    audio_rate: int = 44100

    @property
    def frames(self) -> int:
        """Frames in the whole clip."""
        return sum(self.shots)

    @property
    def cuts(self) -> list[int]:
        """Indices of the first frame of every shot but the first."""
        return [int(i) for i in np.cumsum(self.shots)[:-1]]


@dataclass(frozen=True)
class ShotsTruth:
    """What is known of a shots clip, per frame: the photo→frame affine (T, 2, 3), the light gain (T,)
    (0 at the black first frame) and the shot number (T,)."""

    affines: np.ndarray
    gains: np.ndarray
    shots: np.ndarray


def shots_motion(spec: ShotsSpec) -> ShotsTruth:
    """The affines, gains and shot numbers of every frame of a shots clip."""
    if not 1 <= len(spec.shots) <= len(SHOT_LOOKS):
        raise ValueError(f"a shots clip has 1 to {len(SHOT_LOOKS)} shots, got {len(spec.shots)}")
    affines, shots = [], []
    for k, count in enumerate(spec.shots):
        (fx, fy), height, _, _ = SHOT_LOOKS[k]
        scale = height * spec.height / 512.0
        phase = 2 * np.pi * np.arange(count) / max(count, 24)
        zoom = _zoom_matrix(spec, k)
        for p in phase:
            angle = np.deg2rad(spec.rotate_deg) * np.sin(p)
            c, s = np.cos(angle) * scale, np.sin(angle) * scale
            cx = fx * spec.width + spec.drift * spec.width * np.sin(p)
            cy = fy * spec.height
            affine = np.array([[c, -s, cx - (c * 256 - s * 256)], [s, c, cy - (s * 256 + c * 256)]])
            affines.append(zoom[:, :2] @ affine + np.c_[np.zeros((2, 2)), zoom[:, 2]])
            shots.append(k)
    gains = np.minimum(np.arange(spec.frames) / max(spec.fade, 1), 1.0) if spec.fade else np.ones(spec.frames)
    return ShotsTruth(np.asarray(affines, np.float64), gains.astype(np.float64), np.asarray(shots))


def _zoom_matrix(spec: ShotsSpec, shot: int) -> np.ndarray:
    """2×3 frame→frame scaling of a zoom-cut shot about its anchor (the identity for other shots)."""
    factor, (ax, ay) = ZOOM_CUTS.get(shot, (1.0, (0.0, 0.0)))
    x, y = ax * spec.width, ay * spec.height
    return np.array([[factor, 0.0, x * (1 - factor)], [0.0, factor, y * (1 - factor)]])


def shots_frames(spec: ShotsSpec, truth: ShotsTruth | None = None) -> list[np.ndarray]:
    """Every frame of a shots clip, (H, W, 3) uint8 RGB."""
    truth = truth or shots_motion(spec)
    photo = portrait()
    one = SampleSpec(width=spec.width, height=spec.height, faces=1)
    backgrounds = [background(spec.width, spec.height, a, b) for _, _, a, b in SHOT_LOOKS[:len(spec.shots)]]
    frames = []
    for i in range(spec.frames):
        image = render(one, truth.affines[i][None, None], np.ones(1), 0, photo, backgrounds[truth.shots[i]])
        if truth.gains[i] < 1:  # the fade darkens the whole picture, background included
            image = np.clip(image * truth.gains[i] + 0.5, 0, 255).astype(np.uint8)
        frames.append(image)
    return frames


def write_shots_sample(path: str | Path, spec: ShotsSpec = ShotsSpec()) -> ShotsTruth:
    """Write a shots clip (H.264, an AAC tone when ``spec.audio``); return what is known of it."""
    truth = shots_motion(spec)
    _write_frames(path, shots_frames(spec, truth), spec.width, spec.height, spec.fps,
                  spec.audio_rate if spec.audio else 0)
    return truth


def _write_frames(path: str | Path, frames: Iterable[np.ndarray], width: int, height: int, fps: int,
                  audio_rate: int) -> None:
    import av  # only writing needs PyAV: rendering frames in memory does not

    from henshin.engine.formats import X264_PARAMS

    count = 0
    with av.open(str(path), mode="w") as out:
        video = out.add_stream("libx264", rate=fps)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        video.options = {"crf": "12", "preset": "veryfast", "x264-params": X264_PARAMS}  # same bytes every run
        audio = out.add_stream("aac", rate=audio_rate, layout="mono") if audio_rate else None
        for i, image in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts = i
            frame.time_base = Fraction(1, fps)
            out.mux(video.encode(frame))
            count += 1
        out.mux(video.encode(None))
        if audio is not None:
            _write_tone(out, audio, count / fps, audio_rate)


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
