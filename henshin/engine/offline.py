"""Offline scheduling of the stages: threads joined by bounded queues, or one plain loop.

``run_offline``: each stage (decode, track, align, filter, composite, encode) is a
thread joined to the next by a bounded queue, so stages overlap (PyAV,
mediapipe, OpenCV and ONNX Runtime release the GIL in their heavy calls) and
memory stays bounded. Nothing is dropped and order is kept: one thread per
stage, items in arrival order; the filter stage takes the faces of several
frames at once. ``run_sequential`` runs the same stages one frame after the
other in one thread (the bench's baseline).
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from henshin.engine.sinks import pump
from henshin.engine.stages import FaceStages, Work
from henshin.engine.stats import RunStats
from henshin.engine.steady import steady

if TYPE_CHECKING:
    from henshin.engine.sinks import Sink
    from henshin.engine.sources import Source

_END = object()


@dataclass
class OfflineConfig:
    """Scheduling settings for one offline run."""

    batch_frames: int = 4  # frames whose faces go through the filter together
    queue_size: int = 8
    progress: bool = True


class _Stopped(Exception):
    pass


class _Run:
    """Queue plumbing that notices a stop, and the first error of any thread."""

    def __init__(self, stats: RunStats) -> None:
        self.stats = stats
        self.stop = threading.Event()
        self.error: BaseException | None = None

    def get(self, box: queue.Queue) -> Any:
        while True:
            if self.stop.is_set():
                raise _Stopped
            try:
                return box.get(timeout=0.1)
            except queue.Empty:
                continue

    def put(self, box: queue.Queue, item: Any) -> None:
        while True:
            if self.stop.is_set():
                raise _Stopped
            try:
                box.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def fail(self, exc: BaseException) -> None:
        if self.error is None:
            self.error = exc
        self.stop.set()


class _Stage(threading.Thread):
    """One stage: take up to ``batch`` items, hand results on, flush at the end."""

    def __init__(self, name: str, work: Callable[[list[Any]], Iterable[Any]], inbox: queue.Queue,
                 outbox: queue.Queue | None, run: _Run, batch: int = 1,
                 flush: Callable[[], Iterable[Any]] | None = None) -> None:
        super().__init__(name=f"henshin-{name}", daemon=True)
        self.stage, self._work, self.inbox, self.outbox = name, work, inbox, outbox
        self._run, self._batch, self._flush = run, batch, flush

    def run(self) -> None:
        try:
            while True:
                items = self._take()
                done = items[-1] is _END
                if done:
                    items.pop()
                if items:
                    self._emit(self._timed(lambda items=items: list(self._work(items))))
                if done:
                    if self._flush is not None:
                        self._emit(self._timed(lambda: list(self._flush())))
                    self._put(_END)
                    return
        except _Stopped:
            return
        except BaseException as exc:  # handed to the main thread, which re-raises it
            self._run.fail(exc)

    def _timed(self, work: Callable[[], list[Any]]) -> list[Any]:
        start = time.perf_counter()
        out = work()
        self._run.stats.stage_s[self.stage] += time.perf_counter() - start
        return out

    def _take(self) -> list[Any]:
        items = [self._run.get(self.inbox)]
        while items[-1] is not _END and len(items) < self._batch:
            try:
                items.append(self.inbox.get_nowait())
            except queue.Empty:
                break
        return items

    def _emit(self, items: list[Any]) -> None:
        for item in items:
            self._put(item)

    def _put(self, item: Any) -> None:
        if self.outbox is not None:
            self._run.put(self.outbox, item)


def run_offline(source: Source, stages: FaceStages, sink: Sink, config: OfflineConfig | None = None,
                stats: RunStats | None = None) -> RunStats:
    """Every frame of ``source`` through the stages into ``sink``; the sink is closed on success, aborted otherwise.

    ``stats``: a record to fill (a new one when None), so the caller keeps the figures when the run fails.
    """
    config = config or OfflineConfig()
    stats = stats if stats is not None else RunStats()
    run = _Run(stats)
    progress = _progress_bar(config.progress, source.frame_count)

    def encode(items: list[Work]) -> list[Work]:
        for work in items:
            sink.write(work.frame, work.output)
            stats.frames_out += 1
            progress.update(1)
        return []

    def composite(items: list[Work]) -> Iterator[Work]:
        for work in items:
            stats.count(len(work.faces), work.frame.index if work.cut else None)
            yield stages.composite(work)

    steps: list[tuple[str, Callable, int, Callable | None]] = [
        ("track", lambda items: map(stages.track, items), 1, None),
        ("align", lambda items: (w for work in items for w in stages.align(work)), 1, stages.flush),
        ("filter", stages.filter, config.batch_frames, None),
        ("composite", composite, 1, None),
        ("encode", encode, 1, None),
    ]
    boxes = [queue.Queue(config.queue_size) for _ in range(len(steps) + 1)]
    threads: list[threading.Thread] = [threading.Thread(target=_decode, args=(source, boxes[0], run),
                                                        name="henshin-decode", daemon=True)]
    for i, (name, fn, batch, flush) in enumerate(steps):
        threads.append(_Stage(name, fn, boxes[i], boxes[i + 1] if i + 1 < len(steps) else None, run, batch, flush))
    with steady():
        start = time.perf_counter()
        try:
            for t in threads:
                t.start()
            while any(t.is_alive() for t in threads) and run.error is None:
                if not pump([sink], 0.05):  # a preview window is served from here, the main thread
                    threads[-1].join(timeout=0.1)
        except BaseException as exc:  # Ctrl-C in the main thread: stop every stage, then re-raise
            run.fail(exc)
        finally:
            for t in threads:
                t.join(timeout=5)
            stats.wall_s = time.perf_counter() - start
            progress.close()
    if run.error is not None:
        sink.abort()
        stats.end_reason = "interrupted" if isinstance(run.error, KeyboardInterrupt) else "failed"
        raise run.error
    start = time.perf_counter()
    try:
        sink.close()
    except KeyboardInterrupt:
        sink.abort()
        stats.end_reason = "interrupted"
        raise
    stats.stage_s["encode"] += time.perf_counter() - start
    stats.end_reason = "complete"
    return stats


def _decode(source: Source, outbox: queue.Queue, run: _Run) -> None:
    try:
        frames = iter(source)
        while True:
            start = time.perf_counter()
            frame = next(frames, None)
            run.stats.stage_s["decode"] += time.perf_counter() - start
            if frame is None:
                break
            run.stats.frames_in += 1
            run.put(outbox, Work(frame))
        run.put(outbox, _END)
    except _Stopped:
        return
    except BaseException as exc:
        run.fail(exc)


def run_sequential(source: Source, stages: FaceStages, sink: Sink) -> RunStats:
    """The same stages one frame after the other in one thread: decode, track, align, filter, composite, encode."""
    stats = RunStats()
    clock = _Clock(stats)
    start = time.perf_counter()
    try:
        frames = iter(source)
        while (frame := clock("decode", next, frames, None)) is not None:
            stats.frames_in += 1
            work = clock("track", stages.track, Work(frame))
            for ready in clock("align", lambda w=work: list(stages.align(w))):
                _finish(ready, stages, sink, stats, clock)
        for ready in clock("align", lambda: list(stages.flush())):
            _finish(ready, stages, sink, stats, clock)
    except BaseException:
        sink.abort()
        raise
    stats.wall_s = time.perf_counter() - start
    clock("encode", sink.close)
    return stats


def _finish(work: Work, stages: FaceStages, sink: Sink, stats: RunStats, clock: _Clock) -> None:
    clock("filter", stages.filter, [work])
    stats.count(len(work.faces), work.frame.index if work.cut else None)
    clock("composite", stages.composite, work)
    clock("encode", sink.write, work.frame, work.output)
    stats.frames_out += 1


class _Clock:
    """Calls a stage's function and adds its time to the stage."""

    def __init__(self, stats: RunStats) -> None:
        self.stats = stats

    def __call__(self, stage: str, fn: Callable[..., Any], *args: Any) -> Any:
        start = time.perf_counter()
        try:
            return fn(*args)
        finally:
            self.stats.stage_s[stage] = self.stats.stage_s.get(stage, 0.0) + time.perf_counter() - start


def _progress_bar(enabled: bool, total: int | None) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, unit="frame", disable=not enabled, desc="convert",
                bar_format="{desc} {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} frames [{elapsed}<{remaining}, {rate_fmt}]")
