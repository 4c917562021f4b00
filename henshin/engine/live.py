"""``henshin live``: camera → filter → virtual camera / preview, in real time.

Three threads and a flow limiter in front of the slow part (MediaPipe's idea):
capture keeps only the newest frame, so when the filter is slower than the
camera, frames are dropped before any work is spent on them, never queued;
processing takes the newest frame when it is free; output ticks at the
camera's frame rate, sending the newest result or repeating the last one, so
the virtual camera keeps a steady rate. Capture→sink latency is measured for
every processed frame.
"""

from __future__ import annotations

import dataclasses
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

import cv2
import numpy as np

from henshin.engine.composite import CompositeParams
from henshin.engine.process import FrameProcessor
from henshin.errors import HenshinError, OptionError
from henshin.filters.base import (
    available_filters,
    create_filter,
    filter_class,
    param_names,
    parse_params,
)
from henshin.types import Frame

log = logging.getLogger("henshin")


class LiveSink(Protocol):
    """A live output: takes images, no timestamps needed."""

    def write(self, image: np.ndarray) -> None: ...

    def close(self) -> None: ...


@dataclass
class LiveConfig:
    """Run limits and extras."""

    max_frames: int | None = None  # stop after this many captured frames
    overlay: bool = False  # draw fps and latency on the output


@dataclass
class LiveStats:
    """Counters and timings of a live run."""

    frames_captured: int = 0
    frames_processed: int = 0
    frames_dropped: int = 0
    frames_out: int = 0
    frames_repeated: int = 0
    frames_with_faces: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    output_s: float = 0.0
    wall_s: float = 0.0
    end_reason: str = ""

    def to_json(self, stage_s: dict[str, float]) -> dict[str, Any]:
        """The ``--stats`` document."""
        lat = np.array(self.latencies_ms or [0.0])
        n = max(self.frames_processed, 1)
        stage_ms = {k: round(v / n * 1000, 3) for k, v in stage_s.items()}
        stage_ms["output"] = round(self.output_s / max(self.frames_out, 1) * 1000, 3)
        return {
            "frames_captured": self.frames_captured,
            "frames_processed": self.frames_processed,
            "frames_dropped": self.frames_dropped,
            "frames_out": self.frames_out,
            "frames_repeated": self.frames_repeated,
            "frames_with_faces": self.frames_with_faces,
            "latency_ms": {
                "p50": round(float(np.percentile(lat, 50)), 3),
                "p95": round(float(np.percentile(lat, 95)), 3),
                "p99": round(float(np.percentile(lat, 99)), 3),
                "max": round(float(lat.max()), 3),
            },
            "fps_processed": round(self.frames_processed / self.wall_s, 3) if self.wall_s else 0.0,
            "fps_out": round(self.frames_out / self.wall_s, 3) if self.wall_s else 0.0,
            "wall_s": round(self.wall_s, 3),
            "stage_ms": stage_ms,
            "end_reason": self.end_reason,
        }


class LiveRunner:
    """Runs a live source through a FrameProcessor into live sinks until told to stop."""

    def __init__(self, source: Any, processor: FrameProcessor, sinks: Iterable[LiveSink],
                 config: LiveConfig | None = None) -> None:
        self.source, self.processor = source, processor
        self.sinks = list(sinks)
        self.config = config or LiveConfig()
        self.stats = LiveStats()
        self.period = 1.0 / float(source.frame_rate or 30)
        self._commands: queue.Queue[str] = queue.Queue()
        self._stop = threading.Event()
        self._capture_done = threading.Event()
        self._latest: Frame | None = None
        self._latest_lock = threading.Condition()
        self._out: tuple[Frame, np.ndarray] | None = None
        self._out_lock = threading.Condition()
        self._processing_done = False
        self._sink_error: BaseException | None = None
        self._started = time.perf_counter()

    # -- control ---------------------------------------------------------------

    def command(self, line: str) -> None:
        """Queue a control command; it takes effect before the next processed frame."""
        if line.strip():
            self._commands.put(line.strip())

    def stop(self, reason: str) -> None:
        """Ask every thread to finish."""
        if not self.stats.end_reason:
            self.stats.end_reason = reason
        self._stop.set()
        with self._latest_lock:
            self._latest_lock.notify_all()
        with self._out_lock:
            self._out_lock.notify_all()

    # -- the run -----------------------------------------------------------------

    def run(self) -> LiveStats:
        """Capture, process and output until the source ends, max frames, quit or Ctrl-C."""
        capture = threading.Thread(target=self._capture, name="henshin-capture", daemon=True)
        output = threading.Thread(target=self._output, name="henshin-output", daemon=True)
        self._warm_up()
        start = self._started = time.perf_counter()
        capture.start()
        output.start()
        try:
            self._process_loop()
        except KeyboardInterrupt:
            self.stop("interrupted")
        finally:
            self.stop(self.stats.end_reason or "end of source")
            capture.join(timeout=5)
            output.join(timeout=5)
            self.stats.wall_s = time.perf_counter() - start
            for sink in self.sinks:
                sink.close()
            self.source.close()
            self.processor.close()
        if self._sink_error is not None:
            raise self._sink_error
        return self.stats

    def _capture(self) -> None:
        try:
            for frame in self.source:
                if self._stop.is_set():
                    return
                with self._latest_lock:
                    if self._latest is not None:
                        self.stats.frames_dropped += 1  # never processed: dropped before work
                    self._latest = frame
                    self._latest_lock.notify()
                self.stats.frames_captured += 1
                if self.config.max_frames and self.stats.frames_captured >= self.config.max_frames:
                    self.stats.end_reason = self.stats.end_reason or "max frames"
                    return
            self.stats.end_reason = self.stats.end_reason or "end of source"
        except Exception as exc:  # a camera that fails mid-stream ends the run, frames so far kept
            log.warning("the source stopped (%s); ending the run.", exc)
            self.stats.end_reason = self.stats.end_reason or "source failed"
        finally:
            self._capture_done.set()
            with self._latest_lock:
                self._latest_lock.notify_all()

    def _warm_up(self) -> None:
        """Run the filter once before the clock starts, so the first frames are not late."""
        size = self.processor.filter.input_size
        if self.processor.filter.scope == "frame":
            shape = (1, 3, self.source.height + (-self.source.height) % 4, self.source.width + (-self.source.width) % 4)
        else:
            shape = (1, 3, size, size)
        self.processor.filter.process(np.zeros(shape, np.float32), [-1])

    def _take_newest(self) -> Frame | None:
        with self._latest_lock:
            while self._latest is None and not self._stop.is_set():
                if self._capture_done.is_set():
                    return None
                self._latest_lock.wait(timeout=0.1)
            frame, self._latest = self._latest, None
            return frame

    def _process_loop(self) -> None:
        try:
            while not self._stop.is_set():
                frame = self._take_newest()
                if frame is None:
                    return
                self._apply_commands()
                if self._stop.is_set():
                    return
                image, faces = self.processor(frame)
                self.stats.frames_processed += 1
                self.stats.frames_with_faces += bool(faces)
                if self.config.overlay:
                    image = self._draw_overlay(image)
                with self._out_lock:
                    self._out = (frame, image)
                    self._out_lock.notify()
        finally:
            with self._out_lock:
                self._processing_done = True
                self._out_lock.notify_all()

    def _output(self) -> None:
        # A fixed clock at the camera's rate: each tick sends the newest result,
        # or repeats the last one, so consumers see a steady frame rate.
        last: np.ndarray | None = None
        tick = time.perf_counter()
        try:
            while True:
                tick += self.period
                with self._out_lock:
                    while not self._processing_done and not self._stop.is_set():
                        remaining = tick - time.perf_counter()
                        if remaining <= 0:
                            break
                        self._out_lock.wait(timeout=remaining)
                    item, self._out = self._out, None
                    finished = self._processing_done or self._stop.is_set()
                if item is not None:
                    frame, last = item
                    self._send(last)
                    self.stats.latencies_ms.append((time.monotonic_ns() - frame.captured_at) / 1e6)
                elif finished:
                    return
                elif last is not None:
                    self._send(last)
                    self.stats.frames_repeated += 1
                if time.perf_counter() - tick > self.period:
                    tick = time.perf_counter()  # fell behind (slow sink): resync, don't burst
        except BaseException as exc:
            self._sink_error = exc
            self.stop("output failed")

    def _send(self, image: np.ndarray) -> None:
        start = time.perf_counter()
        for sink in self.sinks:
            sink.write(image)
        self.stats.output_s += time.perf_counter() - start
        self.stats.frames_out += 1

    def _draw_overlay(self, image: np.ndarray) -> np.ndarray:
        recent = self.stats.latencies_ms[-30:]
        latency = float(np.median(recent)) if recent else 0.0
        fps = self.stats.frames_processed / max(time.perf_counter() - self._started, 1e-6)
        out = image.copy()
        text = f"{fps:5.1f} fps  {latency:6.1f} ms"
        cv2.putText(out, text, (10, 28), cv2.FONT_HERSHEY_SIMPLEX, 0.8, (0, 0, 0), 4, cv2.LINE_AA)
        cv2.putText(out, text, (10, 28), cv2.FONT_HERSHEY_SIMPLEX, 0.8, (255, 255, 255), 2, cv2.LINE_AA)
        return out

    def _apply_commands(self) -> None:
        while True:
            try:
                line = self._commands.get_nowait()
            except queue.Empty:
                return
            try:
                if apply_command(self.processor, line) == "quit":
                    self.stop("quit")
                    return
            except HenshinError as exc:
                log.warning("control: %s", exc)


def apply_command(processor: FrameProcessor, line: str) -> str:
    """Apply one control line to a processor; returns the command's verb.

    ``set KEY VALUE`` · ``step KEY DELTA`` · ``filter NAME [KEY=VALUE ...]`` ·
    ``next-filter`` · ``toggle`` · ``on`` · ``off`` · ``quit``
    """
    verb, *args = line.split()
    if verb in ("quit", "exit"):
        return "quit"
    if verb == "toggle":
        processor.enabled = not processor.enabled
    elif verb in ("on", "off"):
        processor.enabled = verb == "on"
    elif verb == "set" and len(args) == 2:
        _set_param(processor, args[0], args[1])
    elif verb == "step" and len(args) == 2:
        current = getattr(processor.filter.params, args[0], getattr(processor.composite, args[0], None))
        if not isinstance(current, int | float) or isinstance(current, bool):
            raise OptionError(f"step needs a numeric parameter, got {args[0]!r}.")
        value = current + type(current)(float(args[1]))
        _set_param(processor, args[0], f"{round(value, 6)}")
    elif verb == "filter" and args:
        _switch_filter(processor, args[0], dict(a.split("=", 1) for a in args[1:] if "=" in a))
    elif verb == "next-filter":
        names = sorted(available_filters())
        current = processor.filter.name
        _switch_filter(processor, names[(names.index(current) + 1) % len(names)] if current in names else names[0], {})
    else:
        raise OptionError(
            f"unknown control command {line!r}; expected set KEY VALUE, step KEY DELTA, filter NAME, toggle or quit."
        )
    return verb


def _set_param(processor: FrameProcessor, key: str, value: str) -> None:
    if key in param_names(type(processor.filter.params)):
        processor.filter.set_params(**{key: value})
    elif key in param_names(CompositeParams):
        changed = parse_params(CompositeParams, {key: value})
        processor.composite = dataclasses.replace(processor.composite, **{key: getattr(changed, key)})
    else:
        raise OptionError(f"unknown parameter {key!r} for filter {processor.filter.name}.")


def _switch_filter(processor: FrameProcessor, name: str, params: dict[str, str]) -> None:
    new = create_filter(name, parse_params(filter_class(name).Params, params), processor.filter.runtime)
    old, processor.filter = processor.filter, new
    old.close()


def read_commands(stream: Any, runner: LiveRunner) -> Callable[[], None]:
    """Start a daemon thread feeding lines of ``stream`` (stdin) to the runner."""

    def loop() -> None:
        try:
            for line in stream:
                runner.command(line)
        except (OSError, ValueError):
            return  # no readable stdin (closed, or captured by a test runner)

    thread = threading.Thread(target=loop, name="henshin-control", daemon=True)
    thread.start()
    return thread.join
