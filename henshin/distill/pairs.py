"""Pairs: face crops cut by the engine as the teacher sees them, the input varied, the teacher's targets.

Every frame of every source is tracked, smoothed and aligned by the engine's own stages
(``henshin.engine.stages``), so the crops are those the teacher would get in ``convert``.
Some frames are chosen (evenly, as many as the budget allows); for each chosen face a few
draws vary the input (``henshin.distill.augment``) and the teacher chain runs on the
varied input. The last 10% of each source (in time) is held out: its frames give the
figures, are never varied, and never reach training.

Pairs are cached in the work folder as shards of uint8 (k, 2, S, S, 3) arrays (crop,
target) with a state file, each written atomically; a run that stops resumes after the
last shard.
"""

from __future__ import annotations

import bisect
import io
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from henshin.distill.augment import NONE, Augment, change_look, move_quad
from henshin.distill.config import DistillConfig, read_json, write_json
from henshin.distill.teacher import Teacher
from henshin.engine.align import box_quad, quad_matrix
from henshin.engine.shots import CutConfig
from henshin.engine.smoothing import CentredSmoother
from henshin.engine.sources import open_source
from henshin.engine.stages import FaceJob, FaceStages, Work, to_spec
from henshin.engine.tracking import TrackerConfig
from henshin.kernels.masks import is_torch
from henshin.kernels.warp import crop_from_frame
from henshin.outputs import write_atomic
from henshin.types import AlignedFace, FilterSpec

HELD_OUT = 0.1  # the last tenth of each source, in time
SHARD = 64  # pairs per shard file
MIN_FRAMES_FOR_HELD_OUT = 10


WARMUP = 8  # frames tracked before a chosen frame: the tracker finds the face, the smoother fills its window
RADIUS = 4  # the centred smoother's half window (convert's default)
SETTLE, MIN_TRAIN, MIN_HELD = 3, 32, 4  # see Plan.picked


@dataclass
class Plan:
    """The chosen frames of each source: training frames spread evenly, thinned when time runs short, and
    held-out frames spread over each source's last tenth.

    Only the frames around a chosen one are tracked (``WARMUP`` before, ``RADIUS`` after, as the engine's
    centred smoother needs); the rest are only decoded, so a long clip costs little more than a short one.
    """

    train: list[list[int]]
    held: list[list[int]]
    seconds: float | None = None
    started: float = field(default_factory=time.monotonic)
    picks: int = 0

    @classmethod
    def make(cls, counts: list[int], wanted: int, held: int, seconds: float | None) -> Plan:
        """Plan ``wanted`` training frames over the sources (in proportion) and ``held`` held-out ones."""
        firsts = [held_out_from(n) for n in counts]
        total = max(sum(firsts), 1)
        train = [_spread(0, first, round(wanted * first / total)) for first in firsts]
        sources = max(len(counts), 1)
        held_out = [
            _spread(first, n, max(1, held // sources)) if n > first else []
            for first, n in zip(firsts, counts, strict=True)
        ]
        return cls(train, held_out, seconds)

    def kind(self, source: int, index: int) -> str:
        """``train``, ``held`` or ``""``: what frame ``index`` of ``source`` is chosen for."""
        if _has(self.train[source], index):
            return "train"
        return "held" if _has(self.held[source], index) else ""

    def needed(self, source: int, index: int) -> bool:
        """Whether frame ``index`` must be tracked: a chosen frame is within ``WARMUP`` after or ``RADIUS`` before."""
        for picks in (self.train[source], self.held[source]):
            k = bisect.bisect_left(picks, index - RADIUS)
            if k < len(picks) and picks[k] <= index + WARMUP:
                return True
        return False

    def picked(self, source: int, index: int) -> None:
        """A training frame was done: thin the chosen frames still ahead when they would overrun the time.

        Never below ``MIN_TRAIN`` training frames and ``MIN_HELD`` held-out ones per source (a slow
        teacher on a slow machine then overruns the pairs' share rather than train on nothing), and
        not before ``SETTLE`` frames were done (the first ones also pay for starting up).
        """
        self.picks += 1
        if self.seconds is None or self.picks < SETTLE:
            return
        spent = time.monotonic() - self.started
        cost = spent / self.picks  # decoding, tracking, varying and the teacher, per chosen frame
        ahead = [
            [i for i in picks if (s, i) > (source, index)] for s, picks in enumerate(self.train)
        ]
        waiting, held = sum(map(len, ahead)), sum(map(len, self.held))
        affordable = max((self.seconds - spent) / cost, 0.0)
        if waiting + held <= affordable:
            return
        held_share = min(held, max(MIN_HELD * len(self.held), 0.2 * affordable))
        keep = max(affordable - held_share, MIN_TRAIN - self.picks, 0) / max(waiting, 1)
        for s, picks in enumerate(ahead):
            kept = _thin(picks, keep)
            self.train[s] = [i for i in self.train[s] if (s, i) <= (source, index)] + kept
        self.held = [_thin(h, held_share / held) for h in self.held]


def _thin(picks: list[int], keep: float) -> list[int]:
    """About ``keep`` (0..1) of ``picks``, spread evenly."""
    if keep >= 1.0:
        return picks
    count = round(len(picks) * keep)
    return [picks[round(k)] for k in np.linspace(0, len(picks) - 1, count)] if count else []


def _spread(start: int, stop: int, count: int) -> list[int]:
    """``count`` frame numbers spread evenly over [start, stop)."""
    if count <= 0 or stop <= start:
        return []
    return sorted({int(v) for v in np.linspace(start, stop - 1, min(count, stop - start)).round()})


def _has(picks: list[int], index: int) -> bool:
    k = bisect.bisect_left(picks, index)
    return k < len(picks) and picks[k] == index


@dataclass
class PairSet:
    """The cached pairs: training and held-out arrays of (k, 2, S, S, 3) uint8, read from the shards."""

    train: list[np.ndarray]
    held: list[np.ndarray]
    state: dict[str, Any]

    @property
    def train_count(self) -> int:
        return sum(len(s) for s in self.train)

    @property
    def held_count(self) -> int:
        return sum(len(s) for s in self.held)

    def stack(self, split: str) -> np.ndarray:
        """Every pair of one split in one array."""
        shards = self.train if split == "train" else self.held
        return np.concatenate(shards) if shards else np.zeros((0, 2, 1, 1, 3), np.uint8)


def load_pairs(folder: Path) -> PairSet:
    """The pairs cached in ``folder/pairs`` (memory-mapped)."""
    state = read_json(folder / "pairs" / "state.json")
    train, held = [], []
    for shard in state.get("shards", []):
        array = np.load(folder / "pairs" / shard["file"], mmap_mode="r")
        (train if shard["split"] == "train" else held).append(array)
    return PairSet(train, held, state)


class PairMaker:
    """Makes the pairs of a run into the work folder (resuming after its last shard)."""

    def __init__(
        self,
        config: DistillConfig,
        teacher: Teacher,
        folder: Path,
        seconds: float | None,
        progress: Callable[..., Any] | None = None,
    ) -> None:
        self.config, self.teacher, self.folder = config, teacher, folder
        self.state = read_json(folder / "pairs" / "state.json") or {
            "shards": [],
            "sources": {},
            "complete": False,
        }
        self.rng = np.random.default_rng([config.seed, len(self.state["shards"])])
        self.seconds = seconds
        self.target = FilterSpec(size=config.size, value_range=(0.0, 255.0), layout="NHWC")
        self.buffers: dict[str, list[np.ndarray]] = {"train": [], "held": []}
        self.progress = progress

    def run(self) -> PairSet:
        """Make every missing pair; returns them all."""
        if not self.state["complete"]:
            opened = [open_source(path) for path in self.config.sources]
            try:
                counts = [int(s.frame_count or 0) for s in opened]
                wanted = math.ceil(self.config.max_pairs / max(self.config.draws, 1))
                plan = Plan.make(counts, wanted, self.config.held_out_frames, self.seconds)
                bar = (
                    self.progress(total=sum(counts) or None, desc="pairs", unit="frame")
                    if self.progress
                    else None
                )
                for i, source in enumerate(opened):
                    if self.state["sources"].get(str(i), {}).get("complete"):
                        if bar is not None:
                            bar.update(counts[i])
                        continue
                    self._source(i, source, counts[i], plan, bar)
                if bar is not None:
                    bar.close()
            finally:
                for source in opened:
                    source.close()
            self.state["complete"] = True
            self._save_state()
        return load_pairs(self.folder)

    # -- one source ------------------------------------------------------------------------------

    def _source(self, index: int, source: Any, count: int, plan: Plan, bar: Any) -> None:
        done = self.state["sources"].get(str(index), {}).get("done", -1)
        stages: FaceStages | None = None
        try:
            for frame in source:
                if plan.needed(index, frame.index):
                    if stages is None:
                        stages = FaceStages(
                            self.teacher.graph,
                            CentredSmoother(RADIUS),
                            TrackerConfig(
                                kind=self.config.tracker,
                                device=self.config.tracker_device,
                                dtype=self.config.tracker_dtype,
                            ),
                            float(source.frame_rate),
                            CutConfig(),
                        )
                    work = Work(frame)
                    stages.track(work)
                    for ready in stages.align(work):
                        self._frame(stages, ready, index, done, plan)
                elif stages is not None:  # a stretch no chosen frame needs: only decoded
                    self._stop(stages, index, done, plan)
                    stages = None
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(
                        pairs=self._count("train"), held=self._count("held"), refresh=False
                    )
            if stages is not None:
                self._stop(stages, index, done, plan)
                stages = None
        finally:
            if stages is not None:
                stages.close()
        self._flush(index, count, force=True)
        self.state["sources"][str(index)] = {"done": count, "complete": True}
        self._save_state()

    def _stop(self, stages: FaceStages, source: int, done: int, plan: Plan) -> None:
        for ready in stages.flush():
            self._frame(stages, ready, source, done, plan)
        stages.close()

    def _frame(self, stages: FaceStages, ready: Work, source: int, done: int, plan: Plan) -> None:
        i = ready.frame.index
        kind = plan.kind(source, i) if i > done else ""
        if not kind or not ready.jobs:
            stages.filter(
                [Work(ready.frame, ended=ready.ended, passthrough=True)]
            )  # tracks that ended, end
            return
        held = kind == "held"
        draws, augment = (1, NONE) if held else (self.config.draws, self.config.augment)
        self.buffers[kind].extend(self.pairs_of(stages, ready, draws, augment))
        if not held:
            plan.picked(source, i)
        self._flush(source, i)

    def pairs_of(
        self, stages: FaceStages, ready: Work, draws: int, augment: Augment
    ) -> Iterator[np.ndarray]:
        """(2, S, S, 3) uint8 pairs (input crop, teacher target) for each face of a frame and each draw."""
        works, inputs = [], []
        for d in range(draws):
            image = ready.image if augment == NONE else change_look(ready.image, self.rng, augment)
            work = Work(
                ready.frame,
                faces=ready.faces,
                image=image,
                ended=ready.ended if d == draws - 1 else [],
            )
            for job in ready.jobs:
                face, window, crop = self._varied(work, job, augment)
                work.jobs.append(FaceJob(face, job.chain, crop=crop))
                inputs.append(self._student_crop(image, window))
            works.append(work)
        stages.filter(works)
        outputs = [job.output for work in works for job in work.jobs]
        for x, y in zip(inputs, outputs, strict=True):
            yield np.stack([x, self._target(x, y)])

    def _varied(
        self, work: Work, job: FaceJob, augment: Augment
    ) -> tuple[AlignedFace, np.ndarray, Any]:
        """The face with its crop window moved (its landmarks stay true), the window, and the teacher's crop."""
        spec = job.chain.crop_links[0].filter.spec
        face = job.face
        edits = bool(job.chain.landmark_links)
        base = face.quad if spec.crop == "aligned" else box_quad(face.landmarks, spec.box_scale)
        # After a landmark edit the engine re-cuts a box from the landmarks: that window cannot move.
        fixed = augment == NONE or (spec.crop == "box" and edits)
        window = base if fixed else move_quad(base, self.rng, augment)
        varied = AlignedFace(
            face.track_id, face.landmarks, window if spec.crop == "aligned" else face.quad
        )
        if edits:
            return (
                varied,
                window,
                None,
            )  # cut by the engine after the landmark links edited the frame
        image = work.pixels(spec.device) if spec.array == "torch" else work.image
        crop = crop_from_frame(
            image, quad_matrix(window, spec.size)[None], spec.size, spec.value_range, spec.layout
        )[0]
        return varied, window, crop

    def _student_crop(self, image: np.ndarray, window: np.ndarray) -> np.ndarray:
        """The student's input: the same window at the student's size, (S, S, 3) uint8."""
        size = self.config.size
        crop = crop_from_frame(image, quad_matrix(window, size)[None], size, (0.0, 255.0), "NHWC")[
            0
        ]
        return np.clip(crop + 0.5, 0, 255).astype(np.uint8)

    def _target(self, x: np.ndarray, y: Any) -> np.ndarray:
        """The teacher's output at the student's size, mixed as the compositor would (strength), as uint8."""
        out = to_spec(y[None], self.teacher.last, self.target)[0]
        if is_torch(out):
            out = out.detach().float().cpu().numpy()
        opacity = self.teacher.opacity
        if opacity < 1.0:
            out = x + (out - x) * opacity
        return np.clip(out + 0.5, 0, 255).astype(np.uint8)

    # -- the cache -------------------------------------------------------------------------------

    def _held_count(self) -> int:
        return sum(s["count"] for s in self.state["shards"] if s["split"] == "held") + len(
            self.buffers["held"]
        )

    def _flush(self, source: int, last: int, force: bool = False) -> None:
        """Write the buffered pairs as shards once there are enough (both splits together, so that every
        pair of the frames up to ``last`` is on disk when the state says so)."""
        if not force and sum(map(len, self.buffers.values())) < SHARD:
            return
        for split, pairs in self.buffers.items():
            if pairs:
                name = f"{split}-{len(self.state['shards']):05d}.npy"
                buffer = io.BytesIO()
                np.save(buffer, np.stack(pairs))
                write_atomic(
                    self.folder / "pairs" / name, buffer.getvalue(), "a distill pairs shard"
                )
                self.state["shards"].append(
                    {"file": name, "split": split, "count": len(pairs), "source": source}
                )
                self.buffers[split] = []
        self.state["sources"][str(source)] = {"done": last, "complete": False}
        self._save_state()

    def _save_state(self) -> None:
        write_json(self.folder / "pairs" / "state.json", self.state)


def held_out_from(count: int) -> int:
    """The first held-out frame of a source of ``count`` frames (``count``: none held out)."""
    return int(count * (1.0 - HELD_OUT)) if count >= MIN_FRAMES_FOR_HELD_OUT else count
