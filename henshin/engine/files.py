"""File outputs: an H.264 video with the source's audio, one image, or a folder of images.

Each is written under a temporary name in the destination's folder and moved
into place only when complete (``henshin.outputs``), so an interrupted run or a
full disk leaves nothing half-written; a folder output only ever adds or
replaces the files it writes.
"""

from __future__ import annotations

import logging
import os
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

from henshin.engine.formats import VIDEO_SUFFIXES, X264_PARAMS, image_name
from henshin.errors import BadInputError, OptionError, OutputError
from henshin.outputs import commit, discard, partial_path, write_error
from henshin.types import Frame

log = logging.getLogger("henshin")

# Audio codecs an MP4/MOV/MKV can carry as they are; anything else is re-encoded to AAC.
COPYABLE_AUDIO = frozenset({"aac", "mp3", "ac3", "eac3", "alac", "opus", "flac"})
SMPTE170M, LIMITED_RANGE = 6, 1  # BT.601 (525-line) colour tags and limited ("MPEG") range, as FFmpeg numbers them
# x264's presets (x264 --fullhelp), fastest first.
X264_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow",
                "placebo")
CRF_RANGE = (0, 51)  # libx264 with 8-bit output


def check_encoder(crf: int, preset: str) -> None:
    """Refuse an x264 quality or preset it would reject (or, for CRF, silently clamp)."""
    if not CRF_RANGE[0] <= crf <= CRF_RANGE[1]:
        raise OptionError(f"--crf expects a whole number from {CRF_RANGE[0]} (lossless) to {CRF_RANGE[1]} "
                          f"(worst), got {crf}; 18 looks like the source, 23 is x264's default.")
    if preset not in X264_PRESETS:
        raise OptionError(f"--preset expects one of {', '.join(X264_PRESETS)}, got {preset!r}.")


class VideoFileSink:
    """H.264 video through PyAV at the source's timestamps, with the source's audio copied through."""

    repeats = False

    def __init__(self, path: str | Path, frame_rate: Fraction, time_base: Fraction,
                 audio_from: Path | None = None, crf: int = 18, preset: str = "veryfast") -> None:
        self.path = Path(path)
        if self.path.suffix.lower() not in VIDEO_SUFFIXES:
            raise OptionError(f"output {self.path} should end in one of {', '.join(sorted(VIDEO_SUFFIXES))}.")
        check_encoder(crf, preset)
        self.frame_rate, self.time_base = frame_rate, time_base
        self.crf, self.preset = crf, preset
        self._tmp: Path | None = partial_path(self.path)
        try:
            self._out = av.open(str(self._tmp), mode="w", format=container_format(self.path))
            self._audio = _AudioCopy(audio_from, self._out) if audio_from else None
        except OSError as exc:
            discard(self._tmp)
            raise write_error(exc, self.path) from None
        self._video: av.video.stream.VideoStream | None = None
        self._last_pts: int | None = None
        self.frames = 0

    def write(self, frame: Frame, image: np.ndarray) -> None:
        """Encode one frame at its source timestamp."""
        try:
            if self._video is None:
                self._open_video(image.shape[1], image.shape[0])
            # RGB → YUV 4:2:0 with OpenCV: the same BT.601 picture as swscale's conversion (round trip
            # 1.19 vs 1.22 levels MAD on the sample), a tenth of the time (0.4 vs 4 ms per 720p frame).
            yuv = cv2.cvtColor(np.ascontiguousarray(_even(image)), cv2.COLOR_RGB2YUV_I420)
            av_frame = av.VideoFrame.from_ndarray(yuv, format="yuv420p")
            pts = frame.pts if frame.pts is not None else frame.index
            if frame.time_base is not None and frame.time_base != self.time_base:
                pts = round(pts * frame.time_base / self.time_base)
            if self._last_pts is not None and pts <= self._last_pts:
                pts = self._last_pts + 1  # never hand the muxer a non-increasing timestamp
            self._last_pts = pts
            av_frame.pts, av_frame.time_base = pts, self.time_base
            for packet in self._video.encode(av_frame):
                self._mux_video(packet)
        except OSError as exc:  # a full or vanished disk: one sentence, and the caller aborts
            raise write_error(exc, self.path) from None
        self.frames += 1

    def close(self) -> None:
        """Flush the encoder, copy the rest of the audio, and move the file into place."""
        try:
            if self._video is not None:
                for packet in self._video.encode(None):
                    self._mux_video(packet)
            if self._audio is not None:
                self._audio.mux_until(None)
                self._audio.close()
            self._out.close()
        except BaseException as exc:
            self.abort()
            if isinstance(exc, OSError):
                raise write_error(exc, self.path) from None
            raise
        commit(self._tmp, self.path)
        self._tmp = None

    def abort(self) -> None:
        """Stop and delete the partial file."""
        try:
            if self._audio is not None:
                self._audio.close()
            self._out.close()
        except Exception:  # noqa: BLE001 - a full disk fails the close too; the file goes either way
            pass
        discard(self._tmp)
        self._tmp = None

    def _open_video(self, width: int, height: int) -> None:
        even_w, even_h = width + width % 2, height + height % 2
        if (even_w, even_h) != (width, height):
            log.info("frames are %dx%d but H.264 needs even sides: %s is %dx%d, the last row/column repeated.",
                     width, height, self.path, even_w, even_h)
        stream = self._out.add_stream("libx264", rate=self.frame_rate)
        stream.width, stream.height = even_w, even_h
        stream.pix_fmt = "yuv420p"
        stream.time_base = self.time_base
        stream.codec_context.time_base = self.time_base
        stream.options = {"crf": str(self.crf), "preset": self.preset, "x264-params": X264_PARAMS}
        # Frames are converted to YUV with BT.601 coefficients (below): say so in the stream, so a
        # player does not guess BT.709 from an HD size and shift the colours.
        context = stream.codec_context
        context.colorspace, context.color_primaries, context.color_trc = SMPTE170M, SMPTE170M, SMPTE170M
        context.color_range = LIMITED_RANGE
        self._video = stream

    def _mux_video(self, packet: av.Packet) -> None:
        if self._audio is not None and packet.pts is not None and packet.time_base is not None:
            # Interleave: all audio up to this video packet's time goes first.
            self._audio.mux_until(float(packet.pts * packet.time_base))
        self._out.mux(packet)


class _AudioCopy:
    """Packets of a source's first audio stream, muxed into an output as they are."""

    def __init__(self, source: Path, out: av.container.OutputContainer) -> None:
        self._in = av.open(str(source))
        self._stream_in = self._in.streams.audio[0] if self._in.streams.audio else None
        self._out, self._stream_out, self._transcode = out, None, False
        self._packets = None
        if self._stream_in is None:
            return
        if self._stream_in.codec_context.name in COPYABLE_AUDIO:
            self._stream_out = out.add_stream_from_template(self._stream_in)
        else:
            rate = self._stream_in.codec_context.sample_rate or 48000
            self._stream_out = out.add_stream("aac", rate=rate, layout=self._stream_in.codec_context.layout)
            self._transcode = True
        self._packets = self._in.demux(self._stream_in)
        self._pending: av.Packet | None = None

    def mux_until(self, seconds: float | None) -> None:
        """Mux audio packets up to ``seconds`` (all of them when None)."""
        if self._packets is None:
            return
        while True:
            packet = self._pending or next(self._packets, None)
            self._pending = None
            if packet is None:
                self._packets = None
                if self._transcode:
                    self._out.mux(self._stream_out.encode(None))
                return
            if packet.dts is None:
                continue
            if seconds is not None and packet.pts is not None and float(packet.pts * packet.time_base) > seconds:
                self._pending = packet
                return
            if self._transcode:
                for frame in packet.decode():
                    frame.pts = None
                    self._out.mux(self._stream_out.encode(frame))
            else:
                packet.stream = self._stream_out
                self._out.mux(packet)

    def close(self) -> None:
        self._in.close()


class ImageSink:
    """One still image (the single frame of an image input), in place when the run completes."""

    repeats = False

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._tmp: Path | None = None

    def write(self, frame: Frame, image: np.ndarray) -> None:
        if self._tmp is not None:
            raise BadInputError(f"{self.path} is an image but the input has several frames; give a video output such as out.mp4.")
        self._tmp = partial_path(self.path)
        _write_file(self._tmp, _encode(self.path, image), self.path)

    def close(self) -> None:
        if self._tmp is not None:
            commit(self._tmp, self.path)
            self._tmp = None

    def abort(self) -> None:
        discard(self._tmp)
        self._tmp = None


class FolderSink:
    """PNG images written into a folder beside what it holds; they appear when the run completes.

    Images go to a temporary folder first (inside the output folder when it
    exists, else beside it); ``close`` moves each into place under its name, so
    only files of those names are ever replaced and nothing else is touched.
    """

    repeats = False

    def __init__(self, path: str | Path, names: list[str] | None = None) -> None:
        self.path = Path(path)
        self._names = names
        self._tmp: Path | None = partial_path(self.path, folder=True, inside=self.path.is_dir())

    def write(self, frame: Frame, image: np.ndarray) -> None:
        _write_file(self._tmp / image_name(frame.index, self._names), _encode(Path("x.png"), image), self.path)

    def close(self) -> None:
        if not self.path.exists():
            commit(self._tmp, self.path)  # the whole folder at once
        else:
            for name in sorted(os.listdir(self._tmp)):
                commit(self._tmp / name, self.path / name)
            discard(self._tmp)
        self._tmp = None

    def abort(self) -> None:
        discard(self._tmp)
        self._tmp = None


def _encode(path: Path, image: np.ndarray) -> bytes:
    ok, data = cv2.imencode(path.suffix.lower(), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    if not ok:
        raise OutputError(f"could not encode {path}; use a .png or .jpg name.")
    return data.tobytes()


def _write_file(tmp: Path, data: bytes, shown: Path) -> None:
    try:
        with open(tmp, "wb") as f:
            f.write(data)
    except OSError as exc:
        raise write_error(exc, shown) from None


def container_format(path: Path) -> str:
    """The container PyAV writes for a video output's suffix (one ``VIDEO_SUFFIXES`` allows)."""
    return {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska"}[path.suffix.lower()]


def _even(image: np.ndarray) -> np.ndarray:
    """Pad odd sizes by one repeated row/column: yuv420p needs even sides."""
    h, w = image.shape[:2]
    if h % 2 == 0 and w % 2 == 0:
        return image
    return np.pad(image, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")
