"""Where frames come from: a video file, a still image, a folder of images.

Every source has the same small interface (aiortc's track, in spirit): it is
opened on construction, iterated for ``Frame`` objects, and closed.
"""

from __future__ import annotations

import heapq
import logging
import re
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from fractions import Fraction
from pathlib import Path
from typing import Protocol

import av
import cv2
import numpy as np

from henshin.engine.formats import IMAGE_SUFFIXES
from henshin.errors import BadInputError, InputNotFoundError
from henshin.types import Frame

log = logging.getLogger("henshin")

DEFAULT_STILL_RATE = Fraction(25)
# The first bytes of the image formats OpenCV reads, to know an image whatever its name says.
IMAGE_MAGIC = {b"\x89PNG\r\n\x1a\n": "PNG", b"\xff\xd8\xff": "JPEG", b"BM": "BMP", b"II*\x00": "TIFF",
               b"MM\x00*": "TIFF"}


class Source(Protocol):
    """A stream of frames with a size, a rate and (when known) a length."""

    width: int
    height: int
    frame_rate: Fraction
    time_base: Fraction
    frame_count: int | None
    path: Path | None

    def __iter__(self) -> Iterator[Frame]: ...

    def close(self) -> None: ...


# Colour tags that mean BT.601 matrix coefficients (or none, which swscale also takes as BT.601).
_BT601 = {2, 5, 6}  # AVCOL_SPC_UNSPECIFIED, BT470BG, SMPTE170M
_LIMITED = {0, 1}  # AVCOL_RANGE_UNSPECIFIED, MPEG (limited range)


def rgb_of(frame: av.VideoFrame) -> np.ndarray:
    """A decoded frame as (H, W, 3) uint8 RGB.

    Limited-range BT.601 4:2:0 (what most H.264 is, and what henshin writes) is
    converted by OpenCV: a tenth of swscale's time, with each chroma sample
    spread over its 2×2 pixels, so a pixel that passes through unchanged gets
    its chroma back exactly when henshin encodes it again. Everything else
    (BT.709, full range, 10-bit, other layouts) goes through swscale, which
    honours the frame's tags.
    """
    if (frame.format.name == "yuv420p" and frame.colorspace in _BT601 and frame.color_range in _LIMITED
            and frame.width % 2 == 0 and frame.height % 2 == 0):
        return cv2.cvtColor(frame.to_ndarray(), cv2.COLOR_YUV2RGB_I420)
    return frame.to_ndarray(format="rgb24")


def upright(image: np.ndarray, rotation: int) -> np.ndarray:
    """Apply a container's display rotation (degrees counter-clockwise) to an image."""
    k = round(rotation / 90) % 4
    return np.ascontiguousarray(np.rot90(image, k)) if k else image


class VideoSource:
    """Decoded frames of a video file's first video stream, with their timestamps."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._container = _open_container(self.path)
        if not self._container.streams.video:
            self._container.close()
            raise BadInputError(
                f"{self.path} has no video stream; give a file with video in it."
            )
        self._stream = self._container.streams.video[0]
        self._stream.thread_type = "AUTO"
        self.time_base = self._stream.time_base or Fraction(1, 90000)
        self.frame_rate = _stream_rate(self._stream)
        self.frame_count = self._stream.frames or _estimate_count(self._container, self._stream)
        # Coded size; frames come out upright, so a rotated file's frames are h×w.
        self.width = self._stream.codec_context.width
        self.height = self._stream.codec_context.height
        self.has_audio = bool(self._container.streams.audio)
        _note_reductions(self.path, _pixel_changes(self._stream.codec_context.pix_fmt or ""))

    def __iter__(self) -> Iterator[Frame]:
        return self.frames()

    def frames(self, pace: Callable[[], None] | None = None) -> Iterator[Frame]:
        """The decoded frames from where the file stands; ``pace`` is called before each frame is decoded
        (a live source spreads its decoding over time with it: at a loop, the frames that the decoder and
        the reorder buffer hold back would otherwise be decoded at once)."""
        index = 0
        try:
            for av_frame, pts in presentation_order(_paced(self._container.decode(self._stream), pace)):
                image = upright(rgb_of(av_frame), av_frame.rotation)
                yield Frame(image, index, pts, av_frame.time_base or self.time_base)
                index += 1
        except av.error.FFmpegError as exc:
            if index == 0:
                raise BadInputError(
                    f"{self.path} could not be decoded ({exc.strerror}); check that the file is a complete video."
                ) from None
            # A truncated tail: keep what decoded, as players do.
            return

    def rewind(self) -> None:
        """Back to the first frame (a seek; the file is opened again where it cannot seek)."""
        try:
            self._container.seek(0)
        except av.error.FFmpegError:
            self._container.close()
            self._container = _open_container(self.path)
            self._stream = self._container.streams.video[0]
            self._stream.thread_type = "AUTO"

    def close(self) -> None:
        self._container.close()


def _paced(frames: Iterator[av.VideoFrame], pace: Callable[[], None] | None) -> Iterator[av.VideoFrame]:
    if pace is None:
        yield from frames
        return
    while True:
        pace()
        try:
            frame = next(frames)
        except StopIteration:
            return
        yield frame


REORDER_DEPTH = 4  # frames; a DivX packed B-frame's timestamp is one frame from its place, an Xvid one two


def presentation_order(frames: Iterable[av.VideoFrame], depth: int = REORDER_DEPTH) -> Iterator[tuple[av.VideoFrame, int | None]]:
    """Decoded frames, each with the timestamp of its place in presentation order.

    A decoder hands frames back in presentation order, but not always with their own
    timestamps: with DivX-style packed B-frames (MPEG-4 Part 2 in AVI) a B-frame comes
    out with its P-frame's timestamp and the P-frame with the B-frame's (pts 4, 3, 6, 5).
    Each frame gets the smallest timestamp among itself and the ``depth`` frames that
    follow it, so the timestamps increase as the pictures do; a well-stamped stream
    keeps its own. A frame without a timestamp keeps None.
    """
    waiting: deque[av.VideoFrame] = deque()
    stamps: list[int] = []
    for frame in frames:
        waiting.append(frame)
        if frame.pts is not None:
            heapq.heappush(stamps, frame.pts)
        if len(waiting) > depth:
            yield _stamped(waiting.popleft(), stamps)
    while waiting:
        yield _stamped(waiting.popleft(), stamps)


def _stamped(frame: av.VideoFrame, stamps: list[int]) -> tuple[av.VideoFrame, int | None]:
    return frame, (heapq.heappop(stamps) if frame.pts is not None and stamps else None)


class ImageSource:
    """A single still image as a one-frame source."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._image, changes = read_image_noting(self.path)
        _note_reductions(self.path, changes)
        self.height, self.width = self._image.shape[:2]
        self.frame_rate = DEFAULT_STILL_RATE
        self.time_base = 1 / DEFAULT_STILL_RATE
        self.frame_count = 1
        self.has_audio = False

    def __iter__(self) -> Iterator[Frame]:
        yield Frame(self._image, 0, 0, self.time_base)

    def close(self) -> None:
        pass


class FolderSource:
    """The images of a folder, in name order, as frames at a fixed rate."""

    def __init__(self, path: str | Path, frame_rate: Fraction = DEFAULT_STILL_RATE) -> None:
        self.path = Path(path)
        self.files = sorted(p for p in self.path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not self.files:
            raise BadInputError(f"{self.path} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))}); put image files in it.")
        first = read_image(self.files[0])
        self.height, self.width = first.shape[:2]
        self._noted: set[str] = set()  # each change said once per run, not once per image
        self.frame_rate = frame_rate
        self.time_base = 1 / frame_rate
        self.frame_count = len(self.files)
        self.has_audio = False

    def __iter__(self) -> Iterator[Frame]:
        for index, file in enumerate(self.files):
            image, changes = read_image_noting(file)
            if image.shape[:2] != (self.height, self.width):
                changes.append(f"resized to {self.width}x{self.height}, the size of the first image")
                image = cv2.resize(image, (self.width, self.height), interpolation=cv2.INTER_AREA)
            _note_reductions(file, [c for c in changes if c not in self._noted], folder=self.path)
            self._noted.update(changes)
            yield Frame(image, index, index, self.time_base, time.monotonic_ns())

    def close(self) -> None:
        pass


def open_source(path: str | Path) -> VideoSource | ImageSource | FolderSource:
    """Open a video file, an image or a folder of images, whichever ``path`` is."""
    path = Path(path)
    if not path.exists():
        raise InputNotFoundError(f"{path} does not exist; check the input path.")
    if path.is_dir():
        return FolderSource(path)
    if path.suffix.lower() in IMAGE_SUFFIXES:
        return ImageSource(path)
    kind = image_format(path)
    if kind is not None:  # a still image under a video's name: read it as the image it is
        log.info("%s is a %s image despite its name; reading it as one image.", path, kind)
        return ImageSource(path)
    return VideoSource(path)


def image_format(path: Path) -> str | None:
    """``PNG``, ``JPEG``... when the file's first bytes say it is an image, else None."""
    try:
        with open(path, "rb") as f:
            head = f.read(12)
    except OSError:
        return None
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WebP"
    return next((kind for magic, kind in IMAGE_MAGIC.items() if head.startswith(magic)), None)


def read_image(path: Path) -> np.ndarray:
    """Read an image file as (H, W, 3) uint8 RGB, or say why it cannot be read."""
    return read_image_noting(path)[0]


def read_image_noting(path: Path) -> tuple[np.ndarray, list[str]]:
    """Read an image as (H, W, 3) uint8 RGB, with what that changed (alpha dropped, 16 bits reduced to 8)."""
    if not path.exists():
        raise InputNotFoundError(f"{path} does not exist; check the input path.")
    data = np.fromfile(path, dtype=np.uint8)
    # IMREAD_COLOR applies the EXIF orientation (IMREAD_UNCHANGED would not); ANYDEPTH keeps 16 bits to see them.
    image = cv2.imdecode(data, cv2.IMREAD_COLOR | cv2.IMREAD_ANYDEPTH) if data.size else None
    if image is None:
        raise BadInputError(f"{path} is not a readable image; give a PNG or JPEG file.")
    changes = []
    if image.dtype != np.uint8:
        changes.append(f"{image.dtype.itemsize * 8}-bit colour reduced to 8 bits per channel")
        image = _to_8bit(image)
    if _has_alpha(data[:4096].tobytes()):
        changes.append("transparency (alpha) dropped: the output has none")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB), changes


def _has_alpha(head: bytes) -> bool:
    """Whether a PNG or WebP file's header declares transparency."""
    if head.startswith(b"\x89PNG"):
        colour_type = head[25] if len(head) > 25 else 0
        before_data = head.split(b"IDAT", 1)[0]
        return colour_type in (4, 6) or b"tRNS" in before_data  # grey+alpha, RGBA, or a transparent palette
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return head[12:16] == b"VP8X" and bool(head[20] & 0x10) or b"ALPH" in head
    return False


def _to_8bit(image: np.ndarray) -> np.ndarray:
    if image.dtype == np.uint16:
        return (image.astype(np.uint32) * 255 // 65535).astype(np.uint8)
    return np.clip(np.nan_to_num(image.astype(np.float32)) * 255.0 + 0.5, 0, 255).astype(np.uint8)  # float images


def _pixel_changes(pix_fmt: str) -> list[str]:
    """What decoding to 8-bit RGB drops from a video stream of this pixel format."""
    changes = []
    if re.search(r"p(9|10|12|14|16)(le|be)?$|48|64", pix_fmt):
        changes.append(f"{pix_fmt} (more than 8 bits per channel) reduced to 8 bits per channel")
    if pix_fmt.startswith(("yuva", "rgba", "bgra", "argb", "abgr", "gbrap", "ya")):
        changes.append("transparency (alpha) dropped: the output has none")
    return changes


def _note_reductions(path: Path, changes: list[str], folder: Path | None = None) -> None:
    """Say in the log, once, where henshin changes what the user gave."""
    for change in changes:
        where = f"{path} (and any other image of {folder} like it)" if folder else str(path)
        log.info("%s: %s.", where, change)


def _open_container(path: Path) -> av.container.InputContainer:
    try:
        return av.open(str(path), mode="r")
    except FileNotFoundError:
        raise InputNotFoundError(f"{path} does not exist; check the input path.") from None
    except IsADirectoryError:
        raise BadInputError(f"{path} is a folder; give a video file.") from None
    except (av.error.InvalidDataError, av.error.FFmpegError, UnicodeDecodeError):
        raise BadInputError(
            f"{path} is not a video or image file that can be read; give an MP4, MOV, MKV or WebM video."
        ) from None


def _stream_rate(stream: av.video.stream.VideoStream) -> Fraction:
    for rate in (stream.average_rate, stream.base_rate, stream.guessed_rate):
        if rate and rate > 0:
            return Fraction(rate)
    return Fraction(25)


def _estimate_count(container: av.container.InputContainer, stream: av.video.stream.VideoStream) -> int | None:
    duration = stream.duration * stream.time_base if stream.duration and stream.time_base else None
    if duration is None and container.duration:
        duration = Fraction(container.duration, av.time_base)
    if duration is None:
        return None
    return max(1, round(duration * _stream_rate(stream)))
