"""The offline frame loop: decode → track → align → filter → composite → encode.

Each stage is a thread joined to the next by a bounded queue, so stages overlap
(PyAV, mediapipe, OpenCV and ONNX Runtime release the GIL in their heavy calls)
and memory stays bounded. Offline nothing is dropped and order is kept: every
stage handles items in arrival order and there is one thread per stage.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from henshin.engine.align import CentredSmoother, ffhq_quad, quad_matrix
from henshin.engine.composite import CompositeParams, composite, paste_patches
from henshin.engine.sinks import Sink
from henshin.engine.sources import Source
from henshin.engine.tracking import FaceTracker, TrackerConfig
from henshin.filters.base import Filter, LandmarkFilter
from henshin.kernels.warp import crop_from_frame, to_uint8_image, to_unit_tensor
from henshin.types import AlignedFace, Work

_END = object()
STAGES = ("decode", "track", "align", "filter", "composite", "encode")


@dataclass
class PipelineConfig:
    """Scheduling and stage settings for one offline run."""

    tracker: TrackerConfig = field(default_factory=TrackerConfig)
    composite: CompositeParams = field(default_factory=CompositeParams)
    smooth_radius: int = 4  # centred window half-width, in frames
    batch_frames: int = 4  # frames whose faces go through the filter together
    queue_size: int = 8
    progress: bool = True


@dataclass
class RunStats:
    """What a run did and how long each stage took."""

    frames_in: int = 0
    frames_out: int = 0
    frames_with_faces: int = 0
    faces: int = 0
    wall_s: float = 0.0
    stage_s: dict[str, float] = field(default_factory=lambda: dict.fromkeys(STAGES, 0.0))

    def to_json(self) -> dict[str, Any]:
        """The ``--stats`` document."""
        n = max(self.frames_out, 1)
        return {
            "frames_in": self.frames_in,
            "frames_out": self.frames_out,
            "frames_with_faces": self.frames_with_faces,
            "faces": self.faces,
            "wall_s": round(self.wall_s, 3),
            "fps": round(self.frames_out / self.wall_s, 3) if self.wall_s > 0 else 0.0,
            "stage_ms": {k: round(v / n * 1000, 3) for k, v in self.stage_s.items()},
        }


class _Stage(threading.Thread):
    """One pipeline stage: take up to ``batch`` items, hand results on, flush at the end."""

    def __init__(self, name: str, run: Callable[[list[Any]], Iterable[Any]], inbox: queue.Queue,
                 outbox: queue.Queue | None, pipe: Pipeline, batch: int = 1,
                 flush: Callable[[], Iterable[Any]] | None = None) -> None:
        super().__init__(name=f"henshin-{name}", daemon=True)
        self.stage, self._run, self.inbox, self.outbox = name, run, inbox, outbox
        self._pipe, self._batch, self._flush = pipe, batch, flush

    def run(self) -> None:
        try:
            while True:
                items = self._take()
                done = items and items[-1] is _END
                if done:
                    items.pop()
                if items:
                    self._emit(self._timed(lambda items=items: list(self._run(items))))
                if done:
                    if self._flush is not None:
                        self._emit(self._timed(lambda: list(self._flush())))
                    self._put(_END)
                    return
        except _Stopped:
            return
        except BaseException as exc:  # handed to the main thread, which re-raises it
            self._pipe.fail(exc)

    def _timed(self, work: Callable[[], list[Any]]) -> list[Any]:
        start = time.perf_counter()
        out = work()
        self._pipe.stats.stage_s[self.stage] += time.perf_counter() - start
        return out

    def _take(self) -> list[Any]:
        items = [self._pipe.get(self.inbox)]
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
            self._pipe.put(self.outbox, item)


class _Stopped(Exception):
    pass


class Pipeline:
    """Runs one source through a filter into one sink, stages overlapping."""

    def __init__(self, source: Source, filt: Filter, sink: Sink, config: PipelineConfig | None = None) -> None:
        self.source, self.filter, self.sink = source, filt, sink
        self.config = config or PipelineConfig()
        self.stats = RunStats()
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self._tracker: FaceTracker | None = None
        self._smoother = CentredSmoother(self.config.smooth_radius)

    # -- queue plumbing that notices a stop --------------------------------

    def get(self, box: queue.Queue) -> Any:
        while True:
            if self._stop.is_set():
                raise _Stopped
            try:
                return box.get(timeout=0.1)
            except queue.Empty:
                continue

    def put(self, box: queue.Queue, item: Any) -> None:
        while True:
            if self._stop.is_set():
                raise _Stopped
            try:
                box.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def fail(self, exc: BaseException) -> None:
        if self._error is None:
            self._error = exc
        self._stop.set()

    # -- the run --------------------------------------------------------------

    def run(self) -> RunStats:
        """Process every frame; the sink is closed on success and aborted otherwise."""
        face_scope = self.filter.scope == "face"
        if face_scope:
            self._tracker = FaceTracker(self.config.tracker)
        steps: list[tuple[str, Callable, int, Callable | None]] = []
        if face_scope:
            steps += [("track", self._track, 1, None), ("align", self._align, 1, self._align_flush)]
        else:
            steps += [("align", self._whole_frame, 1, None)]
        steps += [("filter", self._filter, self.config.batch_frames, None),
                  ("composite", self._composite, 1, None), ("encode", self._encode, 1, None)]
        boxes = [queue.Queue(self.config.queue_size) for _ in range(len(steps) + 1)]
        threads = [threading.Thread(target=self._decode, args=(boxes[0],), name="henshin-decode", daemon=True)]
        for i, (name, fn, batch, flush) in enumerate(steps):
            outbox = boxes[i + 1] if i + 1 < len(steps) else None
            threads.append(_Stage(name, fn, boxes[i], outbox, self, batch, flush))
        self._progress = _progress_bar(self.config.progress, self.source.frame_count)
        start = time.perf_counter()
        try:
            for t in threads:
                t.start()
            while any(t.is_alive() for t in threads):
                threads[-1].join(timeout=0.1)
                if self._error is not None:
                    break
        except BaseException as exc:
            self.fail(exc)
        finally:
            for t in threads:
                t.join(timeout=5)
            self.stats.wall_s = time.perf_counter() - start
            self._progress.close()
            if self._tracker is not None:
                self._tracker.close()
        if self._error is not None:
            self.sink.abort()
            raise self._error
        start = time.perf_counter()
        self.sink.close()
        self.stats.stage_s["encode"] += time.perf_counter() - start
        return self.stats

    def _decode(self, outbox: queue.Queue) -> None:
        try:
            frames: Iterator = iter(self.source)
            while True:
                start = time.perf_counter()
                frame = next(frames, None)
                self.stats.stage_s["decode"] += time.perf_counter() - start
                if frame is None:
                    break
                self.stats.frames_in += 1
                self.put(outbox, Work(frame))
            self.put(outbox, _END)
        except _Stopped:
            return
        except BaseException as exc:
            self.fail(exc)

    def _track(self, items: list[Work]) -> Iterator[Work]:
        for work in items:
            work.tracked = self._tracker(work.frame.image)
            yield work

    def _align(self, items: list[Work]) -> Iterator[Work]:
        for work in items:
            # The quad and the landmarks are smoothed together: one vector per face.
            states = {face.track_id: np.concatenate([ffhq_quad(face.landmarks), face.landmarks.ravel()])
                      for face in work.tracked}
            for ready, smoothed in self._smoother.push(work, states):
                yield self._crop(ready, smoothed)

    def _align_flush(self) -> Iterator[Work]:
        for ready, smoothed in self._smoother.flush():
            yield self._crop(ready, smoothed)

    def _crop(self, work: Work, states: dict[int, np.ndarray]) -> Work:
        size = self.filter.input_size
        work.faces = []
        for face in work.tracked:
            state = states[face.track_id]
            quad, points = state[:4], state[4:].reshape(face.landmarks.shape)
            work.faces.append(AlignedFace(face, quad, quad_matrix(quad, size), points))
        # A landmark filter works on the frame itself: no crops to cut.
        if work.faces and not isinstance(self.filter, LandmarkFilter):
            work.crops = crop_from_frame(work.frame.image, np.stack([f.matrix for f in work.faces]), size)
        return work

    def _whole_frame(self, items: list[Work]) -> Iterator[Work]:
        for work in items:
            work.crops = to_unit_tensor(work.frame.image)
            yield work

    def _filter(self, items: list[Work]) -> list[Work]:
        if isinstance(self.filter, LandmarkFilter):
            for w in items:
                if w.faces:
                    w.patches = self.filter.edit(w.frame.image, [f.landmarks for f in w.faces],
                                                 [f.face.track_id for f in w.faces])
            return items
        # Faces of several frames go through the filter as one batch.
        with_crops = [w for w in items if w.crops is not None]
        if with_crops:
            batch = np.concatenate([w.crops for w in with_crops])
            ids = [f.face.track_id for w in with_crops for f in w.faces] or [-1] * len(batch)
            out = self.filter.process(batch, ids)
            start = 0
            for w in with_crops:
                n = len(w.crops)
                w.filtered, start = out[start:start + n], start + n
                w.crops = None
        return items

    def _composite(self, items: list[Work]) -> Iterator[Work]:
        for work in items:
            image = work.frame.image
            if work.patches is not None:
                work.output = paste_patches(image, work.patches, self.filter.opacity)
            elif work.filtered is None:
                work.output = image
            elif self.filter.scope == "frame":
                work.output = to_uint8_image(work.filtered[0])
            else:
                work.output = composite(image, work.faces, work.filtered, self.filter.input_size,
                                        self.config.composite, self.filter.opacity)
            yield work

    def _encode(self, items: list[Work]) -> list[Work]:
        for work in items:
            self.sink.write(work.frame, work.output)
            self.stats.frames_out += 1
            if work.faces:
                self.stats.frames_with_faces += 1
                self.stats.faces += len(work.faces)
            self._progress.update(1)
        return []


def _progress_bar(enabled: bool, total: int | None) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, unit="frame", disable=not enabled, desc="convert",
                bar_format="{desc} {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} frames [{elapsed}<{remaining}, {rate_fmt}]")
