"""One frame's way, written once: track → smooth → align → filter → composite.

The offline, live and sequential schedulers all run these stages; they differ
only in how they run them (threads and queues, a newest-frame flow limiter, or
one loop) and in the smoother they hand in (a centred window offline, One Euro
live). A ``Work`` carries a frame through the stages.

Per-face state lives here, owned by the engine: the first time a face reaches a
link its filter's ``start_track`` gives the state that comes back with every
batch item of that face; when the tracker ends the track, ``end_track`` gets it
back. A filter whose spec is ``temporal`` also gets its previous output (and
input and crop matrix); one whose spec asks for ``temporal_blend`` has its
outputs blended with the previous one by the input's optical flow
(``henshin.engine.temporal``).

Shot changes are found where tracking runs (``henshin.engine.shots``): at a cut
every track ends, so smoothing, per-face state and temporal memory restart;
whole-frame filters restart their track (-1) there too.

On the GPU path a batch is a torch tensor on the filter's device from the crop
to the paste-back; the frame is uploaded once and downloaded once.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from henshin.engine.align import crop_matrix, ffhq_quad
from henshin.engine.chains import Chain, FilterGraph, Link
from henshin.engine.composite import Compositor, face_width, paste_background, paste_patches
from henshin.engine.governor import FULL, Level, crop_side
from henshin.engine.people import PeopleMasker
from henshin.engine.shots import CutConfig, CutDetector
from henshin.engine.smoothing import Smoother
from henshin.engine.temporal import MAX_GAP_S, Previous, blend_with_previous
from henshin.engine.tracking import FaceTracker, TrackerConfig
from henshin.kernels.landmarks import NUM_LANDMARKS, mean_shift
from henshin.kernels.masks import is_torch
from henshin.kernels.warp import batch_to_image, convert_range, crop_from_frame, frame_to_batch
from henshin.types import AlignedFace, Face, FaceContext, FilterSpec, Frame

FRAME_TRACK = -1  # the track id whole-frame filters see


@dataclass(slots=True, eq=False)
class FaceJob:
    """One face on its way through its chain: the crop going in, the last link's output coming out."""

    face: AlignedFace
    chain: Chain
    crop: Any = None
    output: Any = None


@dataclass(slots=True, eq=False)
class Work:
    """A frame and everything computed for it so far; what the stages pass along.

    image: the frame being built: the decoded image until a landmark link edits
    a copy. batch/result: for whole-frame chains, the frame as the first frame
    link's batch item and the last link's output item. output: (H, W, 3) uint8.
    cut: the frame starts a new shot (every track before it ended). people:
    (H, W) float32 weight of the people in the frame, for ``background`` filters.
    """

    frame: Frame
    cut: bool = False
    faces: list[Face] = field(default_factory=list)
    started: list[int] = field(default_factory=list)
    ended: list[int] = field(default_factory=list)
    jobs: list[FaceJob] = field(default_factory=list)
    image: Any = None
    batch: Any = None
    result: Any = None
    output: np.ndarray | None = None
    passthrough: bool = False
    uploads: dict[str, Any] = field(default_factory=dict)
    people: np.ndarray | None = None

    def pixels(self, device: str) -> Any:
        """``image`` as a torch tensor on ``device``, uploaded once per frame (and per edit)."""
        if device not in self.uploads:
            import torch

            self.uploads[device] = torch.from_numpy(np.ascontiguousarray(self.image)).to(device, non_blocking=True)
        return self.uploads[device]


def open_tracker(config: TrackerConfig) -> FaceTracker:
    """The tracker over the backend ``config.kind`` names: mediapipe's graphs, or its networks in torch."""
    return FaceTracker(config)


class FaceStages:
    """The stages of the frame loop over one filter graph; a scheduler decides how they run."""

    def __init__(self, graph: FilterGraph, smoother: Smoother, tracker: TrackerConfig | None = None,
                 frame_rate: float = 30.0, cuts: CutConfig | None = None) -> None:
        self.graph, self.smoother = graph, smoother
        self.tracker_config = tracker or TrackerConfig()
        self.frame_rate = frame_rate
        self._tracker: FaceTracker | None = None
        self._cuts = CutDetector(cuts)
        self._people: PeopleMasker | None = None
        self._states: dict[tuple[int, int], tuple[Link, Any]] = {}
        self._previous: dict[tuple[int, int], Previous] = {}
        self._compositor = Compositor()
        self.quality = FULL  # the live governor's level (offline: always full)
        # (chain, track) → the landmarks a face's last output was made at, the output, and when (a count)
        self._held: dict[tuple[int, int], tuple[np.ndarray, Any, int]] = {}
        self._made = 0

    def open(self, warm: bool = False) -> None:
        """Allocate what the first frame would otherwise wait for (the tracker's graphs); ``warm``
        also runs them once and readies them for ``max_faces`` faces (live: no late first faces)."""
        if self.graph.needs_faces and self._tracker is None:
            self._tracker = open_tracker(self._tracking_at(self.quality))
        if warm and self._tracker is not None:
            self._tracker.warm()

    def set_quality(self, level: Level) -> None:
        """Run the next frames at a level of the live governor's ladder (``FULL``: as asked)."""
        if level.crop_scale != self.quality.crop_scale:
            self._previous.clear()  # a temporal blend never mixes two crop sizes
        self._held.clear()  # a result is held only at the level (and with the filters) it was made at
        self.quality = level
        if self._tracker is not None:
            self._tracker.config = self._tracking_at(level)
        for link in self.graph.links:
            link.filter.set_quality(min(level.filter_step, link.filter.quality_steps))

    def _tracking_at(self, level: Level) -> TrackerConfig:
        if level.detect_every == 1:
            return self.tracker_config
        return dataclasses.replace(self.tracker_config, detect_every=self.tracker_config.detect_every
                                   * level.detect_every)

    def spec_of(self, link: Link) -> FilterSpec:
        """A link's spec at the governor's level: a free-size crop filter's crops may be cut smaller."""
        spec = link.filter.spec
        if self.quality.crop_scale == 1 or not spec.free_size or spec.consumes != "crops":
            return spec
        return dataclasses.replace(spec, size=crop_side(spec.size, self.quality.crop_scale))

    # -- track -----------------------------------------------------------------------------------

    def track(self, work: Work) -> Work:
        """Look for a cut, then find this frame's faces (none needed for a whole-frame chain, or when the effect is off)."""
        work.passthrough = not self.graph.enabled
        work.cut = self._cuts(work.frame.image)
        if work.cut and self._tracker is not None:
            work.ended = self._tracker.end_all()
        if not work.passthrough and self._needs_people():
            self._people = self._people or PeopleMasker()
            work.people = self._people(work.frame.image, work.cut)
        if work.passthrough or not self.graph.needs_faces:
            return work
        self.open()
        update = self._tracker.track(work.frame.image)
        work.faces, work.started, work.ended = update.faces, update.started, [*work.ended, *update.ended]
        return work

    # -- smooth + align ---------------------------------------------------------------------------

    def align(self, work: Work) -> Iterator[Work]:
        """Smooth each face's square and landmarks; yield the frames now complete, crops cut."""
        for track_id in work.ended:
            self.smoother.end_track(track_id)
        # The square and the landmarks are smoothed together: one vector per face.
        values = {f.track_id: np.concatenate([ffhq_quad(f.landmarks), f.landmarks.ravel()]) for f in work.faces}
        for ready, smoothed in self.smoother.push(work, values, self._time(work.frame)):
            yield self._prepare(ready, smoothed)

    def flush(self) -> Iterator[Work]:
        """The frames the smoother still holds, at the end of the stream."""
        for ready, smoothed in self.smoother.flush():
            yield self._prepare(ready, smoothed)

    def _prepare(self, work: Work, smoothed: dict[int, np.ndarray]) -> Work:
        work.image = work.frame.image
        if work.passthrough:
            return work
        for face in work.faces:
            vector = smoothed[face.track_id]
            aligned = AlignedFace(face.track_id, vector[4:].reshape(NUM_LANDMARKS, -1).astype(np.float32), vector[:4])
            work.jobs.append(FaceJob(aligned, self.graph.chain_for(face.track_id)))
        # Crops are cut now, overlapping the filter, unless a landmark link edits the frame first.
        for chain, jobs in _by_chain(work.jobs):
            if not chain.landmark_links:
                self._cut(work, chain, jobs)
        if self.graph.scope == "frame" and not self.graph.default.landmark_links:
            self._frame_batch(work)
        return work

    def _cut(self, work: Work, chain: Chain, jobs: Sequence[FaceJob]) -> None:
        if not chain.crop_links or not jobs:
            return
        spec = self.spec_of(chain.crop_links[0])
        image = work.pixels(spec.device) if spec.array == "torch" else work.image
        matrices = np.stack([crop_matrix(job.face, spec) for job in jobs])
        crops = crop_from_frame(image, matrices, spec.size, spec.value_range, spec.layout)
        for job, crop in zip(jobs, crops, strict=True):
            job.crop = crop

    def _frame_batch(self, work: Work) -> None:
        spec = self.graph.default.frame_links[0].filter.spec
        image = work.pixels(spec.device) if spec.array == "torch" else work.image
        work.batch = frame_to_batch(image, spec.value_range, spec.layout)[0]

    # -- filter ------------------------------------------------------------------------------------

    def filter(self, works: Sequence[Work]) -> Sequence[Work]:
        """Run every chain: landmark edits per frame, then crops of all frames batched per chain."""
        self._retire()
        live = [w for w in works if not w.passthrough]
        for work in live:
            self._edit(work)
        for chain in self.graph.chains:
            jobs = [(work, job) for work in live for job in work.jobs if job.chain is chain and job.crop is not None]
            jobs = [(work, job) for work, job in jobs if not self._reuse(job)]
            if self.quality.in_turn:
                jobs = self._in_turn(chain, jobs)
            if jobs and chain.crop_links:
                stack = _stack([job.crop for _, job in jobs])
                items = [(work, job.face) for work, job in jobs]
                out, _ = self._run_links(chain.crop_links, stack, items)
                for (_, job), item in zip(jobs, out, strict=True):
                    job.output = item
                    if self.quality.hold or self.quality.in_turn:
                        self._made += 1
                        self._held[(id(chain), job.face.track_id)] = (job.face.landmarks, item, self._made)
        for frames in _split_at_cuts([w for w in live if w.batch is not None]):
            if frames[0].cut:  # whole-frame filters start a new "track" with the shot
                self._end_track(FRAME_TRACK)
            links = self.graph.default.frame_links
            # On the CPU whole frames go one at a time: a batch of 720p frames through a network
            # only thrashes the caches (measured: 573 vs 360 ms a frame); a GPU takes them together.
            groups = [frames] if is_torch(frames[0].batch) else [[w] for w in frames]
            for group in groups:
                out, _ = self._run_links(links, _stack([w.batch for w in group]), [(w, None) for w in group])
                for work, item in zip(group, out, strict=True):
                    work.result = item
        for work in works:
            for track_id in work.ended:
                self._end_track(track_id)
        return works

    def _reuse(self, job: FaceJob) -> bool:
        """At a governed level that holds still faces: give ``job`` its face's last output when it barely moved."""
        if not self.quality.hold:
            return False
        held = self._held.get((id(job.chain), job.face.track_id))
        if held is None:
            return False
        moved = mean_shift(job.face.landmarks, held[0])
        if moved >= self.quality.hold * face_width(job.face):
            return False
        job.output = held[1]
        return True

    def _in_turn(self, chain: Chain, jobs: list[tuple[Work, FaceJob]]) -> list[tuple[Work, FaceJob]]:
        """At a governed level that runs faces in turn: of two or more faces, the half (rounded up) whose
        results are oldest run, a face without a result always; the others keep their last output."""
        if len(jobs) < 2:
            return jobs
        held = [self._held.get((id(chain), job.face.track_id)) for _, job in jobs]
        fresh = [i for i, h in enumerate(held) if h is None]
        oldest = sorted((i for i, h in enumerate(held) if h is not None), key=lambda i: held[i][2])
        room = max(math.ceil(len(jobs) / 2) - len(fresh), 0)
        for i in oldest[room:]:
            jobs[i][1].output = held[i][1]
        run = set(fresh) | set(oldest[:room])
        return [wj for i, wj in enumerate(jobs) if i in run]

    def _edit(self, work: Work) -> None:
        """Landmark links edit the frame (each sees the last one's output); then their chains' crops are cut."""
        for chain, jobs in _by_chain(work.jobs):
            if not chain.landmark_links:
                continue
            for link in chain.landmark_links:
                contexts = [self._context(link, link.filter.spec, work, job.face) for job in jobs]
                patches = link.filter.edit(work.image, contexts)
                if patches:
                    work.image = paste_patches(work.image, patches, link.filter.opacity)
                    work.uploads.clear()
            self._cut(work, chain, jobs)
        if self.graph.scope == "frame" and self.graph.default.landmark_links:
            self._frame_batch(work)

    def _run_links(self, links: Sequence[Link], batch: Any, items: Sequence[tuple[Work, AlignedFace | None]]
                   ) -> tuple[Any, FilterSpec]:
        """A batch through links in order; between links it is moved into the next one's size, range and place."""
        x, previous = batch, self.spec_of(links[0])
        for k, link in enumerate(links):
            spec = self.spec_of(link)
            if k:
                x = to_spec(x, previous, spec)
            contexts = [self._context(link, spec, work, face) for work, face in items]
            y = self._call(link, spec, x, contexts)
            opacity = link.filter.opacity
            if k < len(links) - 1 and opacity < 1:
                # Inside a chain a weak link is mixed with its input here; the last one in the frame.
                y = x + (to_spec(y, spec, spec, size_of(x, spec)) - x) * opacity
            x, previous = y, spec
        return x, previous

    def _call(self, link: Link, spec: FilterSpec, batch: Any, contexts: list[FaceContext]) -> Any:
        if not spec.temporal and spec.temporal_blend <= 0:
            return link.filter.process(batch, contexts)
        if not spec.temporal:
            # Blending alone: the filter still takes the whole batch; its outputs are blended in order after.
            return _stack(self._remember(link, spec, batch, link.filter.process(batch, contexts), contexts))
        # A temporal filter sees each face's previous output: never two frames of one face in one call.
        out: list[Any] = [None] * len(contexts)
        for group in _rounds([c.track_id for c in contexts]):
            items = batch[group] if is_torch(batch) else batch[np.asarray(group)]
            chosen = [contexts[i] for i in group]
            for c in chosen:
                if (previous := self._recall(link, c)) is not None:
                    c.previous, c.previous_input, c.previous_matrix = previous.output, previous.input, previous.matrix
            result = self._remember(link, spec, items, link.filter.process(items, chosen), chosen)
            for j, i in enumerate(group):
                out[i] = result[j]
        return _stack(out)

    def _recall(self, link: Link, c: FaceContext) -> Previous | None:
        """The link's last item for this track (None after a gap: see MAX_GAP_S)."""
        previous = self._previous.get((link.uid, c.track_id))
        return None if previous is None or c.time - previous.time > MAX_GAP_S else previous

    def _remember(self, link: Link, spec: FilterSpec, items: Any, result: Any, contexts: list[FaceContext]) -> list[Any]:
        """Each output blended with its track's previous one (``temporal_blend``), in order, and kept as the next previous."""
        out = []
        for j, c in enumerate(contexts):
            y, previous = result[j], self._recall(link, c)
            if spec.temporal_blend > 0 and previous is not None:
                y = blend_with_previous(spec, items[j], y, previous, c.matrix, spec.temporal_blend)
            out.append(y)
            self._previous[(link.uid, c.track_id)] = Previous(items[j], y, c.matrix, c.time)
        return out

    def _context(self, link: Link, spec: FilterSpec, work: Work, face: AlignedFace | None) -> FaceContext:
        track = face.track_id if face is not None else FRAME_TRACK
        key = (link.uid, track)
        if key not in self._states:
            self._states[key] = (link, link.filter.start_track(track))
        matrix = crop_matrix(face, spec) if face is not None and spec.consumes == "crops" else None
        return FaceContext(track, self._states[key][1], work.frame.index, self._time(work.frame), matrix,
                           face.landmarks if face is not None else None)

    def _end_track(self, track_id: int) -> None:
        for key in [k for k in self._states if k[1] == track_id]:
            link, state = self._states.pop(key)
            link.filter.end_track(track_id, state)
            self._previous.pop(key, None)
        for key in [k for k in self._held if k[1] == track_id]:
            del self._held[key]
        self._compositor.forget(track_id)

    def _retire(self) -> None:
        """End the per-face states of links live control replaced, then close them."""
        for link in self.graph.retired:
            for key in [k for k in self._states if k[0] == link.uid]:
                _, state = self._states.pop(key)
                link.filter.end_track(key[1], state)
                self._previous.pop(key, None)
            link.filter.close()
        self.graph.retired = []

    # -- composite ---------------------------------------------------------------------------------

    def composite(self, work: Work) -> Work:
        """Blend each face's output into the frame (or take the whole-frame result); output is uint8 NumPy."""
        if work.result is not None:
            spec = self.graph.default.frame_links[-1].filter.spec
            if spec.mask == "background" and work.people is not None:
                frame = work.pixels(str(work.result.device)) if is_torch(work.result) else work.image
                work.output = _host(paste_background(frame, work.result, work.people, spec))
            else:
                work.output = _host(batch_to_image(work.result, spec.value_range, spec.layout))
            return work
        done = [job for job in work.jobs if job.output is not None]
        if not done:
            work.output = work.image
            return work
        devices = {str(job.output.device) for job in done if is_torch(job.output)}
        canvas = work.pixels(sorted(devices)[0]).clone() if devices else work.image.copy()
        params = self.graph.composite
        for job in done:
            link = job.chain.crop_links[-1]
            spec = self.spec_of(link)
            output = _place(job.output, canvas)
            self._compositor.paste(canvas, job.face, output, crop_matrix(job.face, spec), spec, params,
                                   link.filter.opacity)
        work.output = _host(canvas)
        return work

    # -- the rest ------------------------------------------------------------------------------------

    def close(self) -> None:
        """End every per-face state and release the tracker (the graph's filters belong to the caller)."""
        for track_id in sorted({k[1] for k in self._states}):
            self._end_track(track_id)
        if self._tracker is not None:
            self._tracker.close()
            self._tracker = None
        if self._people is not None:
            self._people.close()
            self._people = None

    def _needs_people(self) -> bool:
        """Whether a whole-frame link puts its output on the background only."""
        return any(link.filter.spec.mask == "background" for link in self.graph.default.frame_links)

    def _time(self, frame: Frame) -> float:
        t = frame.time
        return t if t is not None else frame.index / self.frame_rate


def to_spec(batch: Any, src: FilterSpec, dst: FilterSpec, size: int | None = None) -> Any:
    """A batch moved from one link's spec to another's: place (NumPy/torch, device), layout, size, range."""
    if dst.array == "torch" and not is_torch(batch):
        import torch

        batch = torch.from_numpy(np.ascontiguousarray(batch)).to(dst.device)
    elif dst.array == "torch" and str(batch.device) != dst.device:
        batch = batch.to(dst.device)
    elif dst.array == "numpy" and is_torch(batch):
        batch = batch.detach().float().cpu().numpy()
    if src.layout != dst.layout:
        order = (0, 2, 3, 1) if dst.layout == "NHWC" else (0, 3, 1, 2)
        batch = batch.permute(*order) if is_torch(batch) else batch.transpose(order)
    side = size or (dst.size if dst.consumes == "crops" else None)
    if side is not None and size_of(batch, dst) != side:
        batch = _resize(batch, side, dst.layout)
    return convert_range(batch, src.value_range, dst.value_range)


def size_of(batch: Any, spec: FilterSpec) -> int:
    """The side of a square batch's items."""
    return int(batch.shape[-1] if spec.layout == "NCHW" else batch.shape[-2])


def _resize(batch: Any, side: int, layout: str) -> Any:
    if is_torch(batch):
        import torch.nn.functional as F

        x = batch if layout == "NCHW" else batch.permute(0, 3, 1, 2)
        x = F.interpolate(x.float(), size=(side, side), mode="bilinear", align_corners=False, antialias=True)
        return x if layout == "NCHW" else x.permute(0, 2, 3, 1)
    items = batch if layout == "NHWC" else batch.transpose(0, 2, 3, 1)
    out = np.stack([cv2.resize(np.ascontiguousarray(i, np.float32), (side, side), interpolation=cv2.INTER_AREA
                               if i.shape[0] > side else cv2.INTER_LINEAR) for i in items])
    return out if layout == "NHWC" else out.transpose(0, 3, 1, 2)


def _by_chain(jobs: Sequence[FaceJob]) -> list[tuple[Chain, list[FaceJob]]]:
    groups: dict[int, tuple[Chain, list[FaceJob]]] = {}
    for job in jobs:
        groups.setdefault(id(job.chain), (job.chain, []))[1].append(job)
    return list(groups.values())


def _split_at_cuts(works: Sequence[Work]) -> list[list[Work]]:
    """Consecutive works in runs that each start at a cut (or at the first work)."""
    runs: list[list[Work]] = []
    for work in works:
        if not runs or work.cut:
            runs.append([])
        runs[-1].append(work)
    return runs


def _rounds(track_ids: Sequence[int]) -> list[list[int]]:
    """Indices split into rounds in which each track appears at most once, in order."""
    rounds: list[list[int]] = []
    seen: dict[int, int] = {}
    for i, track in enumerate(track_ids):
        n = seen.get(track, 0)
        seen[track] = n + 1
        if n == len(rounds):
            rounds.append([])
        rounds[n].append(i)
    return rounds


def _stack(items: Sequence[Any]) -> Any:
    if is_torch(items[0]):
        import torch

        return torch.stack(list(items))
    return np.stack(items)


def _place(item: Any, canvas: Any) -> Any:
    """A filter's output item on the canvas's side (NumPy or the canvas's device)."""
    if is_torch(canvas):
        import torch

        return item.to(canvas.device) if is_torch(item) else torch.from_numpy(np.ascontiguousarray(item)).to(canvas.device)
    return item.detach().float().cpu().numpy() if is_torch(item) else item


def _host(image: Any) -> np.ndarray:
    return image.cpu().numpy() if is_torch(image) else image
