"""A worker's side of a distributed conversion: whole segments through the same stages as a local run.

``SegmentConverter`` builds the filter graph (and so its compiled network) once
and then converts one segment after another: a ``SegmentSource`` seeks back to
the keyframe before the segment's warm-up frames and decodes through its
look-ahead; ``FaceStages`` + ``run_offline`` do exactly what a local ``convert``
does; a ``SegmentSink`` encodes only the segment's own frames, with the local
run's encoder settings, into a file whose bytes go back to the driver. A fresh
encoder starts every segment with an IDR frame, so the driver can join the
segments by stream copy.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from henshin.engine.chains import ChainRequest, FilterGraph
from henshin.engine.convert import ConvertJob
from henshin.engine.distributed.plan import Segment
from henshin.engine.distributed.seek import decode_from, prime
from henshin.engine.files import VideoFileSink
from henshin.engine.offline import OfflineConfig, run_offline
from henshin.engine.smoothing import CentredSmoother
from henshin.engine.sources import VideoSource, rgb_of, upright
from henshin.engine.stages import FaceStages, Work
from henshin.errors import BadInputError
from henshin.types import Frame

log = logging.getLogger("henshin")

Progress = Callable[[int], None]  # frames of the segment written so far


def settings_key(job: ConvertJob) -> dict[str, Any]:
    """Everything in a conversion job that changes the output, as JSON-able data (paths and scheduling left out)."""
    doc = {f.name: getattr(job, f.name) for f in fields(job) if f.name not in _NOT_OUTPUT}
    runtime = doc.pop("runtime")
    doc["runtime"] = None if runtime is None else {"runtime": runtime.runtime, "precision": runtime.precision,
                                                   "device": runtime.device}
    return json.loads(json.dumps(doc, default=_plain, sort_keys=True))


_NOT_OUTPUT = {"input", "output", "overwrite", "extra_sinks", "scheduling"}


def _plain(value: Any) -> Any:
    return vars(value) if hasattr(value, "__dict__") else str(value)


@dataclass
class SegmentResult:
    """A converted segment: its encoded bytes and what it took.

    frames: frames written (the segment's own); processed: frames that went
    through the stages, warm-up and look-ahead included.
    """

    input: str
    index: int
    frames: int
    processed: int
    frames_with_faces: int
    seconds: float
    worker: str
    data: bytes
    stage_s: dict[str, float]


class SegmentSource(VideoSource):
    """The frames of one segment's decode window: warm-up, its own frames, look-ahead.

    It seeks back to the keyframe the plan names, then decodes forward and keeps
    frames by timestamp: everything before the warm-up's first frame is dropped,
    wherever the decoder happens to start. Timestamps are the presentation-order
    ones a local run gives (``presentation_order``), and frames carry their index
    in the whole file, so filters see the same frame numbers and times as there.
    """

    def __init__(self, segment: Segment) -> None:
        super().__init__(segment.input)
        self.segment = segment
        self.frame_count = segment.warm_frames + segment.frames + segment.ahead_frames

    def __iter__(self) -> Iterator[Frame]:
        seg = self.segment
        if seg.seek_ts is not None:
            prime(self._container, self._stream)
        expected = iter(seg.window)
        index = seg.first - seg.warm_frames
        for av_frame, pts in decode_from(self._container, self._stream, seg.seek_ts):
            if pts is None or pts < seg.warm_pts:
                continue  # ahead of the warm-up, wherever the seek landed
            want = next(expected, None)
            if want is None:
                return  # the look-ahead's last frame is in
            if pts != want:
                raise BadInputError(f"{seg.name}: decoding from its keyframe gives a frame at {pts} where the file "
                                    f"has one at {want}; the file may be damaged, convert it without --ray.")
            yield Frame(upright(rgb_of(av_frame), av_frame.rotation), index, pts, self.time_base)
            index += 1


class SegmentSink:
    """Encodes only the segment's own frames (warm-up and look-ahead are dropped) into ``inner``."""

    repeats = False

    def __init__(self, segment: Segment, inner: VideoFileSink, progress: Progress | None = None) -> None:
        self.segment, self.inner, self.progress = segment, inner, progress
        self.frames = 0

    def write(self, frame: Frame, image: Any) -> None:
        if not self.segment.writes(frame.pts):
            return
        self.inner.write(frame, image)
        self.frames += 1
        if self.progress is not None:
            self.progress(self.frames)

    def close(self) -> None:
        self.inner.close()

    def abort(self) -> None:
        self.inner.abort()


class SegmentConverter:
    """Converts whole segments with one filter graph, built once for all of them.

    ``job`` is a local conversion job whose filter, tracking, smoothing, encoder
    and runtime settings apply to every segment; its input and output are not used.
    """

    def __init__(self, job: ConvertJob, worker: str | None = None) -> None:
        self.job = job
        self.worker = worker or f"{socket.gethostname()}:{os.getpid()}"
        self.graph = FilterGraph(ChainRequest(job.filter, dict(job.faces), dict(job.params)), job.runtime)

    def convert(self, segment: Segment, progress: Progress | None = None) -> SegmentResult:
        """Decode, track, filter, composite and encode one segment; its bytes and figures."""
        job = self.job
        start = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="henshin-segment-") as tmp:
            path = Path(tmp) / f"segment-{segment.index:05d}.mp4"
            source = SegmentSource(segment)
            try:
                sink = SegmentSink(segment, VideoFileSink(path, segment.frame_rate, segment.time_base, None,
                                                          job.crf, job.preset), progress)
                stages = _SegmentStages(segment, self.graph, CentredSmoother(job.smooth_radius), job.tracker,
                                        float(segment.frame_rate), job.cuts)
                try:
                    config = OfflineConfig(batch_frames=job.scheduling.batch_frames, progress=False)
                    stats = run_offline(source, stages, sink, config)
                finally:
                    stages.close()
            finally:
                source.close()
            if sink.frames != segment.frames:
                raise BadInputError(f"{segment.name}: {sink.frames} frames decoded, {segment.frames} expected; "
                                    "the file may be damaged, convert it without --ray.")
            data = path.read_bytes()
        return SegmentResult(segment.input, segment.index, sink.frames, stats.frames_processed,
                             stages.frames_with_faces, time.perf_counter() - start, self.worker, data,
                             dict(stats.stage_s))

    def close(self) -> None:
        """Release the filters."""
        self.graph.close()


class _SegmentStages(FaceStages):
    """The local stages, counting the segment's own frames that have a face (warm-up and look-ahead aside)."""

    def __init__(self, segment: Segment, *args: Any) -> None:
        super().__init__(*args)
        self.segment = segment
        self.frames_with_faces = 0

    def composite(self, work: Work) -> Work:
        if work.faces and self.segment.writes(work.frame.pts):
            self.frames_with_faces += 1
        return super().composite(work)
