"""Live scheduling of the stages: camera → filter → virtual camera / preview / recording, in real time.

Three threads and a flow limiter in front of the slow part (MediaPipe's idea):
capture keeps only the newest frame, so when the filter is slower than the
camera, frames are dropped before any work is spent on them, never queued;
processing takes the newest frame when it is free and runs the same stages as
an offline run (with One Euro smoothing, since the future is not known);
output sends each result as soon as it is ready and, on the camera's clock,
repeats the last one to the sinks that need a steady rate when a period sends
nothing (a recording gets each frame once, at its capture timestamp).
Capture→sink latency is measured for every processed frame, and a governor
(``henshin.engine.governor``) trades quality for time while frames run over the
latency budget.
"""

from __future__ import annotations

import dataclasses
import logging
import queue
import statistics
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from henshin.engine.chains import FilterGraph, apply_command
from henshin.engine.governor import Governor, Level, crop_side, ladder
from henshin.engine.sinks import Sink, Tee
from henshin.engine.stages import FaceStages, Work, to_spec
from henshin.engine.stats import RunStats
from henshin.engine.steady import NETWORKS, steady
from henshin.errors import HenshinError
from henshin.types import Face, FaceContext, FilterSpec, Frame

log = logging.getLogger("henshin")

WARM_UP_TRACK = -2  # the track ids a filter's warm-up runs are given: this one and below (never a real face)
# One face's network is timed this many times at each crop in the warm-up, and the median taken: where to
# start depends on it, and one run wavered by a tenth between runs (40-47 ms at 256 px on one machine),
# across a start's threshold.
TIMED_RUNS = 3
RUN_ENDED = "the run has ended; the command was not applied."
# Processing waits for the next camera frame rather than take the newest when that one is due within
# this share of a period (the newest then most of a period old), and for at most this much longer
# (a camera's timing is not exact; a frame that does not come leaves the newest to be taken).
FRESH_WAIT = 0.25
FRESH_SLACK = 0.15

Reply = Callable[[str | None], None]  # called once a control line is applied: None, or the error's sentence


@dataclass(frozen=True)
class LiveView:
    """The last processed frame, for a panel: its input and output images and the faces in it.

    image/output: (H, W, 3) uint8 RGB, read only; faces: the tracked faces; governor: the latency
    governor's level (0: full quality; see ``henshin.engine.governor``).
    """

    index: int
    image: np.ndarray
    output: np.ndarray
    faces: tuple[Face, ...]
    governor: int


@dataclass
class LiveConfig:
    """Run limits and extras."""

    max_frames: int | None = None  # stop after this many captured frames
    overlay: bool = False  # draw fps, latency and the filter's look (style 5 oil-paint) on the output
    latency_budget_ms: float = 100.0  # the governor's target for capture→result; 0 turns it off


class LiveRunner:
    """Runs a live source through the stages into sinks until told to stop."""

    def __init__(self, source: Any, stages: FaceStages, sinks: list[Sink], config: LiveConfig | None = None) -> None:
        self.source, self.stages = source, stages
        self.sinks = Tee(sinks)
        self.config = config or LiveConfig()
        self.stats = RunStats(mode="live")
        self.stats.stage_s["output"] = 0.0
        self.governor = Governor(self.config.latency_budget_ms, ladder_for(stages.graph))
        self.stats.levels = self.governor.frames
        self.stats.latency_budget_ms = self.config.latency_budget_ms
        self.period = 1.0 / float(source.frame_rate or 30)
        self._commands: queue.Queue[tuple[str, Reply | None]] = queue.Queue()
        self._commands_open = True  # false once processing has ended: later commands are answered at once
        self._commands_lock = threading.Lock()
        self.view: LiveView | None = None  # replaced (never changed) after each processed frame
        self._stop = threading.Event()
        self._capture_done = threading.Event()
        self._latest: Frame | None = None
        self._latest_lock = threading.Condition()
        self._out: tuple[Frame, np.ndarray] | None = None
        self._out_lock = threading.Condition()
        self._processing_done = False
        self._sink_error: BaseException | None = None
        self._started = time.perf_counter()
        self.interruption: KeyboardInterrupt | None = None  # Ctrl-C or a signal that ended the run
        self._process_error: BaseException | None = None

    # -- control ---------------------------------------------------------------

    def command(self, line: str, reply: Reply | None = None) -> None:
        """Queue a control command; it takes effect before the next processed frame.

        ``reply`` (the panel's) is called on the processing thread once the line is
        applied, with None or the error's sentence; a blank line with a reply changes
        nothing and is answered in its turn (a way to read the state between frames).
        """
        line = line.strip()
        if not line and reply is None:
            return
        with self._commands_lock:
            if self._commands_open:
                self._commands.put((line, reply))
                return
        _answer(reply, RUN_ENDED)

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

    def run(self) -> RunStats:
        """Capture, process and output until the source ends, max frames, quit, Ctrl-C or a signal.

        Capture, processing and output are threads; the calling (main) thread
        serves the sinks' windows (GUI toolkits serve windows only from there)
        and receives Ctrl-C and signals. Ctrl-C, SIGTERM and SIGHUP end the run
        like ``quit``: the sinks are closed (a recording is kept) and the
        figures returned; the interrupt is kept in ``interruption`` for the
        caller's exit code.
        """
        threads = [threading.Thread(target=target, name=f"henshin-{name}", daemon=True)
                   for name, target in (("capture", self._capture), ("process", self._process),
                                        ("output", self._output))]
        start = time.perf_counter()
        try:
            try:
                scales = [lv.crop_scale for lv in self.governor.levels] if self.governor.budget_ms > 0 else [1.0]
                network_ms = warm_up(self.stages, self.source.width, self.source.height, scales)
                if self.governor.start(network_ms):
                    self.stages.set_quality(self.governor.level)
                    named = {lv.crop_scale: lv.name for lv in reversed(self.governor.levels)}
                    log.info("latency governor: starting at %s (a face's network took %s in the warm-up; "
                             "budget %g ms)", self.governor.level.name,
                             ", ".join(f"{ms:.0f} ms at {named[scale]}" for scale, ms in
                                       sorted(network_ms.items(), reverse=True)), self.governor.budget_ms)
                with steady():
                    start = self._started = time.perf_counter()
                    for thread in threads:
                        thread.start()
                    self._serve(threads[-1])
            except KeyboardInterrupt as exc:
                self.interruption = exc
                self.stop("interrupted")
                self._serve(threads[-1])  # the output thread may be handing a frame to a window
            finally:
                self.stop(self.stats.end_reason or "end of source")
                for thread in threads:
                    if thread.is_alive():
                        thread.join(timeout=5)
                self.stats.wall_s = time.perf_counter() - start
        finally:
            self._finish()
        if self._sink_error is not None:
            raise self._sink_error
        if self._process_error is not None:
            raise self._process_error
        return self.stats

    def _serve(self, output: threading.Thread) -> None:
        """The main thread's part until the output thread ends: the windows' event loops, or waiting."""
        while output.is_alive():
            if not self.sinks.pump(0.03):
                output.join(timeout=0.1)

    def _process(self) -> None:
        try:
            self._process_loop()
        except BaseException as exc:  # handed to the main thread, which re-raises it after cleaning up
            self._process_error = exc
            self.stop("processing failed")

    def _finish(self) -> None:
        """Close the sinks (abort them when one failed), the source and the stages."""
        self._close_commands()  # processing may never have started (a failed warm-up): no command waits forever
        try:
            if self._sink_error is None:
                self.sinks.close()
            else:
                self.sinks.abort()
        except BaseException as exc:  # a recording that cannot be finished (full disk): reported by run()
            self._sink_error = self._sink_error or exc
        finally:
            self.source.close()
            self.stages.close()

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
                self.stats.frames_in += 1
                if self.config.max_frames and self.stats.frames_in >= self.config.max_frames:
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

    def _take_newest(self) -> Frame | None:
        """The newest captured frame, waited for when none is there yet.

        When the newest is already most of a camera period old and the next is due within
        ``FRESH_WAIT`` of the period, the next is waited for instead (the older one is dropped, as any
        frame overtaken before work is): a frame's latency is its age when work starts plus the work,
        and the age of the newest frame is spread over a whole period, so waiting a few ms takes up to
        a period off that frame's latency, the late tail included.
        """
        with self._latest_lock:
            while self._latest is None and not self._stop.is_set():
                if self._capture_done.is_set():
                    return None
                self._latest_lock.wait(timeout=0.1)
            held = self._latest
            if held is not None and not self._capture_done.is_set():
                due = held.captured_at / 1e9 + self.period  # when the next frame should come
                wait = due - time.monotonic_ns() / 1e9
                if 0 < wait <= FRESH_WAIT * self.period:
                    end = due + FRESH_SLACK * self.period
                    while self._latest is held and not self._stop.is_set() and not self._capture_done.is_set():
                        left = end - time.monotonic_ns() / 1e9
                        if left <= 0:
                            break
                        self._latest_lock.wait(timeout=left)
            frame, self._latest = self._latest, None
            return frame

    def _process_loop(self) -> None:
        try:
            while not self._stop.is_set():
                frame = self._take_newest()
                if frame is None:
                    return
                if self._apply_commands():  # the graph may have new filters: a new ladder, the level kept
                    self.governor.relevel(ladder_for(self.stages.graph))
                    self.stages.set_quality(self.governor.level)
                if self._stop.is_set():
                    return
                work = process_frame(self.stages, frame, self.stats, self._tracked)
                self._govern((time.monotonic_ns() - frame.captured_at) / 1e6, len(work.faces))
                image = work.output
                if self.config.overlay:
                    figures = self._figures(len(work.faces))
                    image = draw_figures(image, figures)
                    # The original too, for a side-by-side view: the figures readable on both halves.
                    frame = dataclasses.replace(frame, image=draw_figures(frame.image, figures))
                self.view = LiveView(frame.index, frame.image, image, tuple(work.faces),
                                     self.governor.index)
                with self._out_lock:
                    self._out = (frame, image)
                    self._out_lock.notify()
        finally:
            with self._out_lock:  # however processing ended, the output thread finishes
                self._processing_done = True
                self._out_lock.notify_all()
            self._close_commands()

    def _tracked(self, work: Work) -> None:
        """Tell the governor a frame's faces before they are cut; apply its level when it changes."""
        if self.governor.faces_found(len(work.faces)):
            self._level_changed()

    def _govern(self, latency_ms: float, faces: int) -> None:
        """Tell the governor how late this frame's result is and its faces; apply its level when it changes."""
        if self.governor.observe(latency_ms, faces):
            self._level_changed()

    def _level_changed(self) -> None:
        level = self.governor.level
        self.stages.set_quality(level)
        log.info("latency governor: %s (level %d of %d)", level.name, self.governor.index,
                 len(self.governor.levels) - 1)

    def _output(self) -> None:
        # Each new result goes out as soon as it is ready. The camera's clock cuts time into periods,
        # and a sink that must keep a rate (a virtual camera) gets the last frame again when a period
        # ends with nothing sent in it. (A period once took one new frame only: a result ready in a
        # period that had sent one waited for the next, and a filter as fast as the camera locked into
        # that wait, every frame up to a period late.) A period that sent two covers the next quiet
        # one, so the rate stays the camera's.
        last: tuple[Frame, np.ndarray] | None = None
        tick = time.perf_counter() + self.period
        sends, spare = 0, 0  # frames sent in this period; an earlier period's second frame, not yet used
        try:
            while True:
                with self._out_lock:
                    while self._out is None:
                        if self._processing_done or self._stop.is_set():
                            return
                        now = time.perf_counter()
                        if now >= tick:
                            break
                        self._out_lock.wait(timeout=tick - now)
                    item, self._out = self._out, None
                if self._stop.is_set():
                    return  # quit, a closed window, Ctrl-C: nothing more is sent
                if item is not None:
                    last, sends = item, sends + 1
                    self._send(*item, repeated=False)
                    self.stats.latencies_ms.append((time.monotonic_ns() - item[0].captured_at) / 1e6)
                    continue
                # The period is over.
                if sends:
                    spare = min(spare + sends - 1, 1)
                elif spare:
                    spare -= 1
                elif last is not None and self.sinks.repeats:
                    self._send(*last, repeated=True)
                    self.stats.frames_repeated += 1
                sends = 0
                tick = max(tick + self.period, time.perf_counter())  # a slow sink resyncs, never bursts
        except BaseException as exc:
            self._sink_error = exc
            self.stop("output failed")

    def _send(self, frame: Frame, image: np.ndarray, repeated: bool) -> None:
        start = time.perf_counter()
        self.sinks.write(frame, image, repeated)
        self.stats.stage_s["output"] += time.perf_counter() - start
        self.stats.frames_out += 1

    def _figures(self, faces: int) -> str:
        """The overlay's line: processed frames per second, median recent latency, faces in this frame, the look."""
        recent = self.stats.latencies_ms[-30:]
        latency = float(np.median(recent)) if recent else 0.0
        fps = self.stats.frames_processed / max(time.perf_counter() - self._started, 1e-6)
        figures = f"{fps:5.1f} fps  {latency:6.1f} ms  {faces} face{'' if faces == 1 else 's'}"
        return f"{figures}  {self.stages.graph.label}"

    def _apply_commands(self) -> bool:
        """Apply the queued control lines, answering each; whether there were any."""
        applied = False
        while not self._stop.is_set():
            try:
                line, reply = self._commands.get_nowait()
            except queue.Empty:
                return applied
            applied = applied or bool(line)
            _answer(reply, self._apply(line) if line else None)
        return applied

    def _apply(self, line: str) -> str | None:
        """Apply one control line; None, or the sentence saying why it was not applied."""
        try:
            if apply_command(self.stages.graph, line) == "quit":
                self.stop("quit")
                return None
            # What a key or a line did, echoed where the user looks, with the look it led to
            # (`n` answers "step style 1: style 6 blue-lace").
            log.info("control: %s: %s", line, self.stages.graph.label)
            return None
        except HenshinError as exc:
            log.warning("control: %s", exc)
            return str(exc)
        except Exception as exc:  # noqa: BLE001 - a bad control line never ends a live run
            why = str(exc).splitlines()[0] if str(exc) else ""
            message = f"{line!r} could not be applied ({type(exc).__name__}: {why}); the run goes on unchanged."
            log.warning("control: %s", message)
            return message

    def _close_commands(self) -> None:
        """Processing has ended: answer what is still queued, and from now on answer at once."""
        with self._commands_lock:
            self._commands_open = False
        while True:
            try:
                _line, reply = self._commands.get_nowait()
            except queue.Empty:
                return
            _answer(reply, RUN_ENDED)


def _answer(reply: Reply | None, error: str | None) -> None:
    if reply is None:
        return
    try:
        reply(error)
    except Exception as exc:  # noqa: BLE001 - a failing listener (a closed panel) never ends the run
        log.debug("control: a reply could not be delivered (%s)", exc)


def ladder_for(graph: FilterGraph) -> list[Level]:
    """The governor's levels for a filter graph: crop steps for its fully convolutional face
    links, detector and hold steps when it tracks faces, then its filters' own steps."""
    specs = [link.filter.spec for link in graph.links]
    sides = [spec.size for spec in specs if spec.consumes == "crops" and spec.free_size]
    steps = max((link.filter.quality_steps for link in graph.links), default=0)
    return ladder(max(sides) if sides else None, graph.needs_faces, steps)


def draw_figures(image: np.ndarray, text: str) -> np.ndarray:
    """A copy of ``image`` with ``text`` in its top-left corner, white on a black outline (readable on any picture)."""
    out = image.copy()
    scale = max(0.5, image.shape[0] / 720 * 0.8)
    origin = (10, int(28 * scale / 0.8))
    cv2.putText(out, text, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 4, cv2.LINE_AA)
    cv2.putText(out, text, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 2, cv2.LINE_AA)
    return out


def warm_up(stages: FaceStages, width: int, height: int, crop_scales: Sequence[float] = (1.0,)) -> dict[float, float]:
    """Open the stages and run every network once on blank input before the clock starts, so the first frames are not late.

    The tracker is readied for ``max_faces`` faces, and fully convolutional face networks run at
    one face and at ``max_faces`` faces, at each crop size the governor may cut (``crop_scales``): a
    runtime's first run at a larger batch grows its memory (ONNX Runtime, the default network with two
    faces: 100 ms against 68 once grown), and OpenVINO compiles each new shape (0.4 s the first time on
    a machine, an import of under 0.1 s after), which a frame the governor has just made smaller would
    otherwise wait for. Where the governor may cut crops (more than one scale), one face runs once
    more at each size, timed: the ms a face's networks take at each crop scale (empty otherwise), from
    which the governor starts: the median of ``TIMED_RUNS`` runs.
    """
    stages.open(warm=True)
    timed: dict[float, float] = {}
    for link in stages.graph.links:
        spec = link.filter.spec
        if spec.consumes == "landmarks":
            continue
        # (fully convolutional face networks: the cheap ones live runs; a heavy network's first large
        # batch costs little beside its own time, and warming it would cost seconds)
        several = spec.consumes == "crops" and spec.free_size
        batches = sorted({1, stages.tracker_config.max_faces}) if several else [1]
        scales = sorted(set(crop_scales), reverse=True) if several else [1.0]
        sides = {scale: crop_side(spec.size, scale) if several else spec.size for scale in scales}
        for size in sorted(set(sides.values()), reverse=True):
            side = (size, size) if spec.consumes == "crops" else (height, width)
            sized = dataclasses.replace(spec, size=size) if spec.consumes == "crops" else spec
            shape = (3, *side) if spec.layout == "NCHW" else (*side, 3)
            for batch in batches:
                _warm_run(link.filter, sized, (batch, *shape))
            if several and len(scales) > 1:
                runs = []
                for _ in range(TIMED_RUNS):
                    began = time.perf_counter()
                    _warm_run(link.filter, sized, (1, *shape))
                    runs.append((time.perf_counter() - began) * 1e3)
                ms = statistics.median(runs)
                for scale in scales:
                    if sides[scale] == size:
                        timed[scale] = timed.get(scale, 0.0) + ms
    return timed


def _warm_run(filt: Any, spec: FilterSpec, shape: tuple[int, ...]) -> None:
    """One run of ``filt`` on a blank batch of ``shape``, as warm-up faces that are started and ended."""
    batch = shape[0]
    blank = to_spec(np.zeros(shape, np.float32), FilterSpec(layout=spec.layout, value_range=spec.value_range), spec)
    states = [filt.start_track(WARM_UP_TRACK - i) for i in range(batch)]
    try:
        filt.process(blank, [FaceContext(WARM_UP_TRACK - i, st) for i, st in enumerate(states)])
    finally:
        for i, st in enumerate(states):
            filt.end_track(WARM_UP_TRACK - i, st)


def process_frame(stages: FaceStages, frame: Frame, stats: RunStats | None = None,
                  tracked: Callable[[Work], None] | None = None) -> Work:
    """One frame through the stages at once (live smoothing holds nothing back); ``work.output`` is the result.

    ``tracked``: called with the frame's work once its faces are found, before they are cut.
    """
    stats = stats or RunStats(mode="live")
    work = _timed(stats, "track", stages.track, Work(frame))
    if tracked is not None:
        tracked(work)
    (work,) = _timed(stats, "align", lambda: list(stages.align(work)))
    with NETWORKS.running():
        _timed(stats, "filter", stages.filter, [work])
    _timed(stats, "composite", stages.composite, work)
    stats.count(len(work.faces), work.frame.index if work.cut else None)
    return work


def _timed(stats: RunStats, stage: str, fn: Callable[..., Any], *args: Any) -> Any:
    start = time.perf_counter()
    out = fn(*args)
    stats.stage_s[stage] += time.perf_counter() - start
    return out


def read_commands(stream: Any, runner: LiveRunner) -> Callable[[], None]:
    """Start a daemon thread feeding lines of ``stream`` (stdin) to the runner.

    Bytes are read and decoded leniently, so a line that is not UTF-8 is answered
    as an unknown command instead of ending the reading.
    """
    raw = getattr(stream, "buffer", None)

    def loop() -> None:
        try:
            for line in raw if raw is not None else stream:
                runner.command(line.decode("utf-8", "replace") if isinstance(line, bytes) else line)
        except (OSError, ValueError):
            return  # no readable stdin (closed, or captured by a test runner)

    thread = threading.Thread(target=loop, name="henshin-control", daemon=True)
    thread.start()
    return thread.join
