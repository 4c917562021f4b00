"""A distributed conversion from start to end: check, plan, convert what is missing, join.

The driver plans every input (keyframes from the packets, no decoding), finds
the segments its work folder already holds from an earlier run, hands the rest
of all files to one pool of workers, keeps each finished segment as it
arrives, and joins a file by stream copy as soon as its last segment is in.
Nothing here knows Ray: the pool does (``henshin.engine.distributed.scheduler``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from henshin.digest import sha256_file
from henshin.engine.convert import ConvertJob
from henshin.engine.distributed.join import join_segments
from henshin.engine.distributed.plan import FilePlan, Segment, plan_file
from henshin.engine.distributed.pool import Failure, Pool, SegmentError
from henshin.engine.distributed.workdir import WorkFolder, default_root, work_key
from henshin.engine.distributed.worker import SegmentResult, settings_key
from henshin.engine.sinks import VIDEO_SUFFIXES, check_output
from henshin.engine.sources import IMAGE_SUFFIXES
from henshin.engine.stats import STAGES
from henshin.errors import HenshinError, InputNotFoundError, OptionError

log = logging.getLogger("henshin")

ATTEMPTS = 3  # tries per segment before it is reported as failed

__all__ = ["DistributedJob", "DistributedStats", "SegmentError", "SegmentRow", "check_files", "run_distributed"]


@dataclass
class DistributedJob:
    """Files (input, output) converted with one set of settings by a pool of workers.

    settings: a local conversion job whose filter, tracking, smoothing, encoder
    and runtime settings apply to every file (its own input and output are not used).
    """

    files: list[tuple[Path, Path]]
    settings: ConvertJob
    segment_seconds: float = 10.0
    warmup: int | None = None  # frames before each segment through the stages; None: max(8, 2 × smoothing radius)
    overwrite: bool = False
    work_root: Path | None = None  # None: <henshin cache>/segments
    progress: bool = True

    @property
    def warmup_frames(self) -> int:
        """Warm-up frames per segment."""
        return self.warmup if self.warmup is not None else max(8, 2 * self.settings.smooth_radius)


@dataclass
class SegmentRow:
    """One segment's figures for ``--stats``."""

    input: str
    index: int
    frames: int
    processed: int
    seconds: float
    worker: str
    attempts: int
    reused: bool
    retries: list[str] = field(default_factory=list)  # why each earlier attempt failed

    def to_json(self) -> dict[str, Any]:
        """The row as written."""
        return {**vars(self), "seconds": round(self.seconds, 3)}


@dataclass
class DistributedStats:
    """What a distributed run did: per file, per segment and per worker, and its overheads.

    planning_s: hashing and demuxing the inputs; startup_s: starting the pool
    (Ray, the actors, their filters); join_s: writing the outputs by stream copy.
    """

    pool: dict[str, Any] = field(default_factory=dict)
    files: list[dict[str, Any]] = field(default_factory=list)
    segments: list[SegmentRow] = field(default_factory=list)
    planning_s: float = 0.0
    startup_s: float = 0.0
    join_s: float = 0.0
    wall_s: float = 0.0
    frames_with_faces: int = 0
    stage_s: dict[str, float] = field(default_factory=lambda: dict.fromkeys(STAGES, 0.0))
    log: Path | None = None  # the pool's log of this run, kept when something went wrong

    @property
    def frames_out(self) -> int:
        """Frames in the outputs."""
        return sum(row.frames for row in self.segments)

    @property
    def converted(self) -> list[SegmentRow]:
        """The segments this run converted (not taken from an earlier run)."""
        return [row for row in self.segments if not row.reused]

    def to_json(self) -> dict[str, Any]:
        """The ``--stats`` document."""
        converted = self.converted
        frames = sum(row.frames for row in converted)
        processed = max(sum(row.processed for row in converted), 1)
        return {
            "mode": "distributed", "pool": self.pool,
            "frames_in": self.frames_out, "frames_out": self.frames_out, "frames_converted": frames,
            "frames_with_faces": self.frames_with_faces,
            "wall_s": round(self.wall_s, 3), "fps": round(frames / self.wall_s, 3) if self.wall_s > 0 else 0.0,
            "planning_s": round(self.planning_s, 3), "startup_s": round(self.startup_s, 3),
            "join_s": round(self.join_s, 3),
            "segments_total": len(self.segments), "segments_converted": len(converted),
            "segments_reused": len(self.segments) - len(converted),
            "stage_ms": {k: round(v / processed * 1000, 3) for k, v in self.stage_s.items()},
            "files": self.files,
            "segments": [row.to_json() for row in self.segments],
            "workers": per_worker(converted),
        }


def per_worker(rows: Sequence[SegmentRow]) -> dict[str, dict[str, Any]]:
    """Segments, frames, busy seconds and fps of each worker."""
    out: dict[str, dict[str, Any]] = {}
    for row in rows:
        w = out.setdefault(row.worker, {"segments": 0, "frames": 0, "seconds": 0.0})
        w["segments"] += 1
        w["frames"] += row.frames
        w["seconds"] += row.seconds
    for w in out.values():
        w["fps"] = round(w["frames"] / w["seconds"], 3) if w["seconds"] > 0 else 0.0
        w["seconds"] = round(w["seconds"], 3)
    return out


@dataclass
class _File:
    """One input on its way: its plan, its work folder, the segments in it so far."""

    input: Path
    output: Path
    plan: FilePlan
    folder: WorkFolder
    done: set[int] = field(default_factory=set)

    @property
    def complete(self) -> bool:
        return len(self.done) == len(self.plan.segments)


def check_files(files: Sequence[tuple[Path, Path]], overwrite: bool) -> None:
    """Refuse, before any work, a missing, repeated or non-video input and an output that is an input, exists or repeats."""
    if not files:
        raise OptionError("there is nothing to convert; give at least one INPUT OUTPUT pair.")
    inputs = [i for i, _ in files]
    seen: dict[Path, Path] = {}
    sources: set[Path] = set()
    for src, dst in files:
        if not src.exists():
            raise InputNotFoundError(f"{src} does not exist; check the input path.")
        if src.resolve() in sources:
            raise OptionError(f"{src} is listed twice; convert it once and copy the output.")
        sources.add(src.resolve())
        if src.is_dir() or src.suffix.lower() in IMAGE_SUFFIXES:
            raise OptionError(f"{src} is not a video; distributed conversion takes video files "
                              "(convert images and folders without --ray).")
        if dst.suffix.lower() not in VIDEO_SUFFIXES:
            raise OptionError(f"output {dst} should end in one of {', '.join(sorted(VIDEO_SUFFIXES))}.")
        key = dst.resolve()
        if key in seen:
            raise OptionError(f"{dst} is the output of both {seen[key]} and {src}; give each input its own output.")
        seen[key] = src
        check_output(dst, inputs, overwrite)


def run_distributed(job: DistributedJob, open_pool: Callable[[], Pool]) -> DistributedStats:
    """Convert every file of ``job`` by segments on the pool ``open_pool`` gives; outputs appear complete."""
    start = time.perf_counter()
    check_files(job.files, job.overwrite)
    stats = DistributedStats()
    files = [_prepare(job, src, dst) for src, dst in job.files]
    stats.planning_s = time.perf_counter() - start
    for f in files:
        for index in sorted(f.done):
            stats.segments.append(_reused_row(f, index))
    todo = [s for f in files for s in f.plan.segments if s.index not in f.done]
    by_input = {str(f.input): f for f in files}
    failures: list[Failure] = []
    try:
        for f in files:
            if f.complete:
                _join(f, stats)
        if todo:
            failures = _convert(job, files, todo, open_pool, stats, by_input)
    except KeyboardInterrupt:
        kept = sum(len(f.done) for f in files if not f.complete)
        log.warning("interrupted: %d finished segments are kept in %s; run the same command again to convert "
                    "only the rest.", kept, _root(job))
        raise
    stats.wall_s = time.perf_counter() - start
    if failures:
        raise _failed(failures, job, stats.log)
    _note_retries(stats)
    return stats


def _convert(job: DistributedJob, files: list[_File], todo: list[Segment], open_pool: Callable[[], Pool],
             stats: DistributedStats, by_input: dict[str, _File]) -> list[Failure]:
    """Run the missing segments on the pool; keep each as it arrives and join a file once complete."""
    start = time.perf_counter()
    pool = open_pool()
    stats.startup_s = time.perf_counter() - start
    stats.pool = pool.describe()
    frames = sum(f.plan.frames for f in files)
    bar = _progress_bar(job.progress, frames, frames - sum(s.frames for s in todo))
    base = bar.n

    def on_result(result: SegmentResult, attempts: int, retries: list[str]) -> None:
        f = by_input[result.input]
        _keep(f, result, attempts, retries, stats)
        if f.complete:
            _join(f, stats)

    def on_progress(written: int) -> None:
        bar.update(base + written - bar.n)

    try:
        failures = pool.run(todo, on_result, on_progress)
    except HenshinError as exc:
        _point_at_log(exc, pool.log)
        raise
    finally:
        bar.close()
        pool.close()
    if failures or any(row.retries for row in stats.converted):
        stats.log = pool.log
    elif pool.log is not None:
        pool.log.unlink(missing_ok=True)  # nothing went wrong: nothing to look at
    return failures


def _prepare(job: DistributedJob, src: Path, dst: Path) -> _File:
    """Plan one input and open its work folder; the segments it already holds are done."""
    src = src.resolve()
    radius = job.settings.smooth_radius
    plan = plan_file(src, job.segment_seconds, job.warmup_frames, radius)
    cut = {"segment_seconds": job.segment_seconds, "warmup": job.warmup_frames, "lookahead": radius}
    digest, settings = sha256_file(src), settings_key(job.settings)
    folder = WorkFolder(_root(job), work_key(digest, settings, cut))
    folder.open({"input": str(src), "sha256": digest, "output": str(dst), "settings": settings,
                 "plan": cut, "segments": len(plan.segments)})
    done = {s.index for s in plan.segments if folder.finished(s.index)}
    return _File(src, dst, plan, folder, done)


def _keep(f: _File, result: SegmentResult, attempts: int, retries: list[str], stats: DistributedStats) -> None:
    """Store a finished segment in its work folder and count it."""
    row = SegmentRow(result.input, result.index, result.frames, result.processed, result.seconds,
                     result.worker, attempts, reused=False, retries=list(retries))
    f.folder.store(result.index, result.data, row.to_json())
    f.done.add(result.index)
    stats.segments.append(row)
    stats.frames_with_faces += result.frames_with_faces
    for stage, seconds in result.stage_s.items():
        stats.stage_s[stage] = stats.stage_s.get(stage, 0.0) + seconds


def _reused_row(f: _File, index: int) -> SegmentRow:
    record = f.folder.record(index)
    return SegmentRow(str(f.input), index, int(record["frames"]), int(record.get("processed", 0)),
                      float(record.get("seconds", 0.0)), str(record.get("worker", "")),
                      int(record.get("attempts", 1)), reused=True)


def _join(f: _File, stats: DistributedStats) -> None:
    """Stream-copy a complete file's segments into its output, then drop its work folder."""
    segments = f.plan.segments
    joined = join_segments(segments, [f.folder.video(s.index) for s in segments], f.output,
                           f.input if f.plan.has_audio else None)
    stats.join_s += joined.seconds
    stats.files.append({"input": str(f.input), "output": str(f.output), "frames": joined.frames,
                        "segments": len(segments), "keyframes": f.plan.keyframes,
                        "join_s": round(joined.seconds, 3)})
    f.folder.remove()


def _failed(failures: Sequence[Failure], job: DistributedJob, log: Path | None = None) -> SegmentError:
    first = failures[0]
    more = f" (and {len(failures) - 1} more segments)" if len(failures) > 1 else ""
    error = SegmentError(f"{first.segment.name} failed {first.attempts} times{more}: {first.error}; the finished "
                         f"segments are kept in {_root(job)}, run the same command again to convert only the rest.")
    _point_at_log(error, log)
    return error


def _point_at_log(exc: BaseException, log: Path | None) -> None:
    """Add the line that says where the pool's log of this run is (shown after the error's sentence)."""
    if log is not None and log.exists():
        exc.add_note(f"Ray's log of this run is in {log}")


def _note_retries(stats: DistributedStats) -> None:
    """Say which segments were converted again, and why: only a lost worker or memory run out is retried."""
    rows = [row for row in stats.converted if row.retries]
    for row in rows:
        log.warning("segment %d of %s was converted again after %s.", row.index + 1, row.input,
                    "; then ".join(_plain_reason(r) for r in row.retries))
    if rows and stats.log is not None:
        log.warning("Ray's log of this run is in %s", stats.log)


def _plain_reason(reason: str) -> str:
    return reason if reason.startswith("its worker") else f"it ran out of memory ({reason})"


def _root(job: DistributedJob) -> Path:
    return job.work_root if job.work_root is not None else default_root()


def _progress_bar(enabled: bool, total: int, done: int) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, initial=done, unit="frame", disable=not enabled, desc="convert",
                bar_format="{desc} {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} frames "
                           "[{elapsed}<{remaining}, {rate_fmt}]")
