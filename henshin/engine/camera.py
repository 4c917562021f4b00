"""Live sources: a webcam, or a video file played at its own pace as a stand-in camera."""

from __future__ import annotations

import queue
import re
import threading
import time
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import cv2

from henshin.engine.sources import VideoSource
from henshin.engine.steady import NETWORKS
from henshin.errors import BadInputError, InputNotFoundError
from henshin.types import Frame


class CameraSource:
    """A webcam through OpenCV, asking for a size, a rate and MJPG where offered.

    ``width``/``height``/``frame_rate`` report what the device actually gave.
    Iteration ends when the camera stops delivering frames (unplugged).
    """

    def __init__(self, device: int | str, width: int | None = None, height: int | None = None,
                 fps: float | None = None) -> None:
        self.device = device
        self._cap = cv2.VideoCapture(device)
        if not self._cap.isOpened():
            self._cap.release()
            raise InputNotFoundError(
                f"camera {device} could not be opened; check that it is connected and not in use "
                "by another program, or pass --source FILE to use a video instead."
            )
        # MJPG lets most USB cameras deliver 720p/1080p at full rate over USB 2.
        self._cap.set(cv2.CAP_PROP_FOURCC, cv2.VideoWriter_fourcc(*"MJPG"))
        if width:
            self._cap.set(cv2.CAP_PROP_FRAME_WIDTH, width)
        if height:
            self._cap.set(cv2.CAP_PROP_FRAME_HEIGHT, height)
        if fps:
            self._cap.set(cv2.CAP_PROP_FPS, fps)
        self.width = int(self._cap.get(cv2.CAP_PROP_FRAME_WIDTH))
        self.height = int(self._cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        self.frame_rate = Fraction(self._cap.get(cv2.CAP_PROP_FPS) or fps or 30).limit_denominator(1001)
        self.time_base = Fraction(1, 1_000_000)
        fourcc = int(self._cap.get(cv2.CAP_PROP_FOURCC))
        self.pixel_format = "".join(chr((fourcc >> 8 * i) & 0xFF) for i in range(4)).strip("\0") or "?"
        self.frame_count = None
        self.path = None

    def __iter__(self) -> Iterator[Frame]:
        index, start = 0, time.monotonic_ns()
        while True:
            ok, bgr = self._cap.read()
            captured = time.monotonic_ns()
            if not ok or bgr is None:
                return
            image = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            yield Frame(image, index, (captured - start) // 1000, self.time_base, captured)
            index += 1

    def describe(self) -> str:
        """What the device gave, for the start-up line."""
        return f"camera {self.device}: {self.width}x{self.height} at {float(self.frame_rate):g} fps ({self.pixel_format})"

    def close(self) -> None:
        self._cap.release()


class RealtimeFileSource:
    """A video file delivered at its own frame rate, like a camera; loops when asked.

    A thread decodes ahead of the delivery, up to ``AHEAD`` frames, one frame each time the
    delivery takes one: at a loop the file is rewound (a seek) and the frames that the decoder's
    reorder buffer holds back are decoded one per frame period rather than all at once, on the
    cores the filters run on (opening the file again at each loop took 15 ms and 35-45 ms of
    decoding in one go, and made the frames around it late). The first frame is delivered once the
    thread is that far ahead (at most ``FILL_WAIT`` later), as by a camera already streaming: filling
    the places during the first frames took the cores from their work (one face live on a slow
    2-core machine, 10 starts each: frame 0's tracking 28-40 ms against 31-49, its latency 66-91 ms
    against 76-105). Once ahead, it decodes between the live loop's network runs (``GATED_AHEAD``).
    """

    # Decoded frames held at most, the reorder buffer's included (a 720p frame is 2.7 MB). More than
    # ``sources.REORDER_DEPTH`` + 1: the first frame comes out of that buffer after so many decodes,
    # each of which takes a place first.
    AHEAD = 8
    FILL_WAIT = 2.0  # seconds the delivery waits at most for the decoder to be ahead before its clock starts
    # With this many frames decoded and waiting, the next is decoded once the live loop's networks are
    # done (``steady.NETWORKS``; one frame period at most): beside a network, whose threads wait for
    # each other at every layer, the decoding made it 20 % slower (two faces at crop 160, 25 against
    # 20 ms at the median).
    GATED_AHEAD = 2

    def __init__(self, path: str | Path, loop: bool = False) -> None:
        self.path = Path(path)
        self.loop = loop
        probe = VideoSource(self.path)
        self.width, self.height = probe.width, probe.height
        self.frame_rate, self.time_base = probe.frame_rate, probe.time_base
        self.frame_count = probe.frame_count
        probe.close()
        self._stops: list[threading.Event] = []

    def __iter__(self) -> Iterator[Frame]:
        decoded: queue.Queue[Frame | BaseException | None] = queue.Queue()
        slots = threading.Semaphore(self.AHEAD)
        stop = threading.Event()
        filled = threading.Event()
        self._stops.append(stop)
        reader = threading.Thread(target=self._read, args=(decoded, slots, stop, filled), name="henshin-decode",
                                  daemon=True)
        reader.start()
        index = 0
        period = 1.0 / float(self.frame_rate)
        try:
            # The clock starts once the decoder is ahead, as a camera that is already streaming:
            # filling every place during the first frames took the cores from their work.
            filled.wait(timeout=self.FILL_WAIT)
            start = time.perf_counter()
            while True:
                frame = decoded.get()
                if frame is None:
                    return
                if isinstance(frame, BaseException):
                    raise frame
                slots.release()
                # Wait for this frame's moment, as a camera would deliver it.
                delay = start + index * period - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                yield Frame(frame.image, index, frame.pts, frame.time_base, time.monotonic_ns())
                index += 1
        finally:
            stop.set()
            slots.release()  # a reader waiting for a place sees the stop
            reader.join(timeout=5)
            self._stops.remove(stop)

    def _read(self, decoded: queue.Queue[Frame | BaseException | None], slots: threading.Semaphore,
              stop: threading.Event, filled: threading.Event) -> None:
        """Decode into ``decoded`` while there is a place for the frame (``slots``), until stopped;
        ``filled`` is set once every place is taken (or the decoding ended)."""

        period = 1.0 / float(self.frame_rate)

        def pace() -> None:
            if not slots.acquire(blocking=False):
                filled.set()  # every place is taken: the delivery's clock may start
                while not slots.acquire(timeout=0.1):
                    if stop.is_set():
                        raise _Stopped
            if stop.is_set():
                raise _Stopped
            if decoded.qsize() >= self.GATED_AHEAD:  # ahead enough to wait for the networks to end
                NETWORKS.wait_idle(period)

        try:
            source = VideoSource(self.path)
            try:
                while not stop.is_set():
                    count = 0
                    for frame in source.frames(pace):
                        decoded.put(frame)
                        count += 1
                    slots.release()  # the look past the last frame took a place and found no frame
                    if not self.loop or count == 0:  # (a file without a frame would loop for ever)
                        break
                    source.rewind()
            finally:
                source.close()
        except _Stopped:
            pass
        except BaseException as exc:  # the delivery raises it in the capturing thread
            decoded.put(exc)
        finally:
            filled.set()
            decoded.put(None)  # the end, also for a delivery still waiting after close()

    def describe(self) -> str:
        return f"file {self.path}: {self.width}x{self.height} at {float(self.frame_rate):g} fps (real time)"

    def close(self) -> None:
        for stop in list(self._stops):
            stop.set()


class _Stopped(Exception):
    """The delivery ended: the decoding thread stops."""


def open_live_source(spec: str, width: int | None = None, height: int | None = None,
                     fps: float | None = None, loop: bool = False) -> CameraSource | RealtimeFileSource:
    """``0``, ``/dev/video2`` or a video file → a live source."""
    if re.fullmatch(r"\d+", spec):
        return CameraSource(int(spec), width, height, fps)
    path = Path(spec)
    if spec.startswith("/dev/video"):
        if not path.exists():
            raise InputNotFoundError(f"camera {spec} does not exist; list cameras with `ls /dev/video*`.")
        return CameraSource(spec, width, height, fps)
    if not path.exists():
        raise InputNotFoundError(f"{spec} does not exist; pass a camera index like 0, a /dev/videoN path, or a video file.")
    if path.is_dir():
        raise BadInputError(f"{spec} is a folder; a live source is a camera or a video file.")
    return RealtimeFileSource(path, loop)

