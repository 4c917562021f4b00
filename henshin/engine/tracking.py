"""Face tracking: a stable id per face, over a detector and face mesh backend.

Each tracked face is followed by re-running the face mesh on a region around
its previous landmarks (mediapipe's own tracking idea, done per face so several
faces and small faces work). The detector runs on the whole frame, and on
overlapping tiles of it to find small faces, only when a face may be missing:
at the start, on the frame a track is lost, every ``detect_every`` frames while
fewer than ``max_faces`` are tracked, and on every frame while no face is
tracked (a fade-in, an empty room) or a lost track has not yet ended. The
whole frame always runs; the tiles all run at the start, when a track is lost
and on the scheduled frames (live: one tile in turn there too, see
``sweep_tiles``), and one tile per frame in turn on the other searching frames,
so the every-frame search stays cheap and a small face is still found within a
few frames. Live (``search_behind``), the scheduled look while every face is
held runs in a helper thread on a detector of its own, and a face it finds
joins at the next frame: the frame that scheduled it waits for no detector. A
face whose landmarks jump in size or place between two frames further than a
head moves (a zoom cut, which leaves the colours as they were) ends its track
and is found afresh. A smaller step that breaks from the face's motion (a
punch-in zoom of 1.15, a jump cut: the tracking mesh fits its old position to
the new picture and takes frames to find the face) gets a second look, a fresh
mesh, and the face goes on from it where the two disagree.

The bookkeeping (ids, numbering, the tile sweep, lost faces given their id
back, zoom cuts) is here once; the networks are a backend
(``TrackerBackend``): mediapipe's Python graphs
(``henshin.engine.mediapipe_tracking``) or its networks in torch
(``henshin.engine.torch_tracking``). ``track_streams`` steps several
independent streams at once, each backend call batched over all of them.
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from henshin.engine.steady import SEARCH_NICE, lower_priority
from henshin.engine.trackbase import (
    DARK_LEVEL,
    Box,
    Detection,
    Rect,
    Seed,
    TrackerBackend,
    TrackerConfig,
    TrackUpdate,
    brighten,
    landmark_box,
)
from henshin.kernels.landmarks import mean_shift
from henshin.types import Face

__all__ = [
    "DARK_LEVEL",
    "Detection",
    "FaceTracker",
    "Seed",
    "TrackUpdate",
    "TrackerBackend",
    "TrackerConfig",
    "brighten",
    "open_backend",
    "track_streams",
]


def open_backend(config: TrackerConfig) -> TrackerBackend:
    """The backend ``config.kind`` names."""
    if config.kind == "torch":
        from henshin.engine.torch_tracking import TorchBackend

        return TorchBackend(
            config.device,
            dtype=config.dtype,
            min_score=config.min_confidence,
            detect_size=config.detect_size,
        )
    from henshin.engine.mediapipe_tracking import MediapipeBackend

    return MediapipeBackend(config)


@dataclass(slots=True)
class _Call:
    """A tracker's request to its backend: ``detect``, ``follow`` or ``start`` over ``items``."""

    kind: str
    frame: Any
    items: list


@dataclass
class _Track:
    track_id: int
    landmarks: np.ndarray  # (478, 3) frame pixels
    state: Any  # the backend's (mediapipe: this face's own FaceMesh in tracking mode)
    missing: int = 0
    box: Box = field(default=(0, 0, 0, 0))
    before: np.ndarray | None = None  # the landmarks of the frame before ``landmarks``, once followed
    followed: int = 0  # frames followed since the track started


Steps = Generator[_Call, list, Any]


class FaceTracker:
    """Finds faces in frames and keeps a stable id for each across frames.

    ``backend``: the networks; by default the one ``config.kind`` names. ``close`` closes it.
    """

    def __init__(
        self, config: TrackerConfig | None = None, backend: TrackerBackend | None = None
    ) -> None:
        self.config = config or TrackerConfig()
        self.backend = backend if backend is not None else open_backend(self.config)
        self._tracks: list[_Track] = []
        self._started: set[int] = set()  # tracks whose start was reported and whose end was not yet
        self._next_id = 0
        self._frames = 0
        self._tile_turn = -1
        self._helper: ThreadPoolExecutor | None = None  # search_behind: the helper thread
        self._helper_backend: TrackerBackend | None = None  # and its detector
        self._behind: Future | None = None  # the search running behind, if any
        self._behind_boxes: dict[int, Box] = {}  # the faces tracked on the frame it searches, by id

    def __call__(self, image: np.ndarray) -> list[Face]:
        """Landmarks for every face in an (H, W, 3) uint8 RGB frame, with track ids."""
        return self.track(image).faces

    def track(self, image: np.ndarray) -> TrackUpdate:
        """This frame's faces, and the tracks that started and ended with it.

        A track starts the first time its face is returned and ends when it has
        been missing for more than ``max_missing`` frames (or the tracker closes):
        its id is never used again.
        """
        return track_streams([self], [image])[0]

    def warm(self) -> None:
        """Ready the backend for ``max_faces`` faces (live, before the clock starts), and with
        ``search_behind`` the helper thread's own detector: made in the helper thread and run once
        there (a mediapipe detector's graph and first run held the first live frames 40-90 ms)."""
        self.backend.warm(self.config.max_faces)
        if self.config.search_behind:
            self._helper_pool().submit(self._warm_helper).result()

    def _warm_helper(self) -> None:
        if self._helper_backend is None:
            self._helper_backend = self.backend.for_thread()
            if self._helper_backend is not self.backend:
                self._helper_backend.warm(0)

    def end_all(self) -> list[int]:
        """End every track (a shot change, or the end of the stream); returns their ids."""
        ended = sorted(self._started)
        self._behind = None  # what a search behind finds belongs to the frames before
        for t in self._tracks:
            self.backend.release(t.state)
        self._tracks, self._started = [], set()
        # the next frame is searched as a stream's first: all tiles, for small faces
        self._frames = 0
        return ended

    def close(self) -> None:
        """End every track and release the backend (and the helper thread's)."""
        self.end_all()
        if self._helper is not None:
            self._helper.shutdown(wait=True)
            self._helper = None
        if self._helper_backend is not None and self._helper_backend is not self.backend:
            self._helper_backend.close()
        self._helper_backend = None
        self.backend.close()

    # -- one frame, as steps that ask the backend (``track_streams`` batches the asks) ------------

    def _steps(self, image: np.ndarray) -> Steps:
        cfg = self.config
        frame = self.backend.prepare(image)
        lost = yield from self._follow(frame)
        yield from self._take_found(frame)
        live = len(self._live())
        due = self._frames % cfg.detect_every == 0 and live < cfg.max_faces
        searching = live == 0 or any(t.missing for t in self._tracks)
        if (self._frames == 0 or lost) and cfg.search_behind:
            # Live: the whole frame now, the small-face tiles behind. A sweep of every tile here
            # held the first frame (and the frame a face was lost) 100 ms or more at 720p.
            yield from self._add_detected(frame, image.shape, [])
            tiles = self._tiles(image)
            if tiles:
                self._search_behind(frame, tiles)
        elif self._frames == 0 or lost or (due and cfg.sweep_tiles):
            yield from self._add_detected(frame, image.shape, self._tiles(image))
        elif due and cfg.search_behind and not searching:
            h, w = image.shape[:2]
            self._search_behind(frame, [(0, 0, w, h), *self._next_tile(image)])
        elif due or searching:
            yield from self._add_detected(frame, image.shape, self._next_tile(image))
        self._drop_duplicates()
        self._end_missing()
        self._frames += 1
        faces = [Face(t.track_id, t.landmarks) for t in self._live()]
        after = {t.track_id for t in self._tracks}
        # A reported track dropped inside this call (a duplicate, or missing too long) ends now.
        ended = sorted(self._started - after)
        self._started -= set(ended)
        started = sorted(f.track_id for f in faces if f.track_id not in self._started)
        self._started.update(started)
        return TrackUpdate(faces, started, ended)

    @staticmethod
    def _ask(kind: str, frame: Any, items: list) -> Steps:
        if not items:
            return []
        return (yield _Call(kind, frame, items))

    def _follow(self, frame: Any) -> Steps:
        """Every live face's mesh from its last landmarks; whether a face was lost."""
        cfg = self.config
        followed = [t for t in self._tracks if not t.missing]
        for t in self._tracks:
            if t.missing:  # lost earlier: only a detection can bring it back
                t.missing += 1
        found = yield from self._ask("follow", frame, [(t.landmarks, t.state) for t in followed])
        jumps = [
            landmarks is not None and _jumped(track.landmarks, landmarks, cfg.max_scale_step, cfg.max_shift)
            for track, landmarks in zip(followed, found, strict=True)
        ]
        redone = yield from self._second_looks(frame, followed, found, jumps)
        lost = False
        jumped: list[np.ndarray] = []
        for i, (track, landmarks) in enumerate(zip(followed, found, strict=True)):
            if landmarks is None:
                track.missing, lost = 1, True
            elif i in redone and redone[i] is not None:  # the same face, its mesh started afresh
                self.backend.release(track.state)
                track.landmarks, track.state = redone[i]
                track.before, track.followed, track.box = None, 0, landmark_box(track.landmarks)
            elif i in redone or jumps[i]:
                jumped.append(landmarks)
                self.backend.release(track.state)
                # ends now, and no detection may take its id back
                track.missing = cfg.max_missing + 1
            else:
                track.before, track.landmarks = track.landmarks, landmarks
                track.box, track.followed = landmark_box(landmarks), track.followed + 1
        if jumped:
            self._tracks = [t for t in self._tracks if t.missing <= cfg.max_missing]
            lost = not (yield from self._refind(frame, jumped)) or lost
        return lost

    def _second_looks(self, frame: Any, followed: list[_Track], found: list, jumps: list[bool]) -> Steps:
        """The followed faces (indices into ``found``) whose follow a second look found wrong, each
        with a fresh mesh of it (landmarks, state), or None where the fresh mesh saw no face.

        A face whose step breaks from its motion so far (``_unexpected``), but not so far that it
        must be a cut (``jumps``, by ``_jumped``), is looked at again: a fresh mesh on a region framed by its new
        landmarks. Where the two disagree, the follow was fooled: a cut that kept the face's size
        and place within a head's reach (a punch-in zoom, a jump cut), or a very fast move, and a
        tracking mesh takes frames to find the face from its old position. The face keeps its track
        and goes on from a mesh started, as ``_refind`` starts one, where the look found it.
        """
        cfg = self.config
        doubtful = [
            i for i, (track, landmarks) in enumerate(zip(followed, found, strict=True))
            if landmarks is not None
            and not jumps[i]
            and _unexpected(track, landmarks, cfg.check_scale_step, cfg.check_shift)
        ]
        looks = yield from self._ask("look", frame, [found[i] for i in doubtful])
        wrong: list[tuple[int, np.ndarray]] = []
        redone: dict[int, tuple[np.ndarray, Any] | None] = {}
        for i, look in zip(doubtful, looks, strict=True):
            if look is None:
                redone[i] = None
            elif _disagree(found[i], look, cfg.check_agreement):
                wrong.append((i, look))
        # The look's graph saw a region framed by the follow's landmarks; the face's own mesh must
        # start on one framed as its next regions will be (see ``_refind``).
        meshes = yield from self._ask("start", frame, [landmarks for _, landmarks in wrong])
        for (i, _), mesh in zip(wrong, meshes, strict=True):
            redone[i] = mesh
        return redone

    def _refind(self, frame: Any, jumped: list[np.ndarray]) -> Steps:
        """New tracks from fresh meshes around faces that jumped; whether every one was found."""
        # Twice: a probe (a look, which keeps no mesh) around where the face jumped to, then the
        # track's own mesh on a region framed by the probe's landmarks. A tracking mesh keeps its
        # last face position in its input's coordinates, so its first region must be framed as the
        # next ones will be. One face at a time (jumps are rare).
        found = True
        for landmarks in jumped:
            (look,) = yield from self._ask("look", frame, [landmarks])
            probe = None if look is None else (yield from self._ask("start", frame, [look]))[0]
            if probe is None:
                found = False
                continue
            self._tracks.append(
                _Track(self._next_id, probe[0], probe[1], 0, landmark_box(probe[0]))
            )
            self._next_id += 1
        return found

    def _add_detected(self, frame: Any, shape: tuple[int, ...], tiles: list[Rect]) -> Steps:
        h, w = shape[:2]
        found = yield from self._ask("detect", frame, [(0, 0, w, h), *tiles])
        yield from self._add_found(frame, _apart([d for ds in found for d in ds]))

    def _add_found(self, frame: Any, detections: list[Detection]) -> Steps:
        first_new = self._next_id
        yield from self._add_detections(frame, detections)
        # Faces that appear in the same frame are numbered left to right (then top to bottom),
        # so ``--face 0`` is predictable for people who enter together.
        new = sorted(
            (t for t in self._tracks if t.track_id >= first_new),
            key=lambda t: (t.box[0] + t.box[2], t.box[1] + t.box[3]),
        )
        for i, t in enumerate(new):
            t.track_id = first_new + i

    def _search_behind(self, frame: Any, rects: list[Rect]) -> None:
        """Start the scheduled search in the helper thread (unless one still runs); ``_take_found``
        collects it."""
        if self._behind is not None:
            return
        self._behind = self._helper_pool().submit(self._detect_behind, frame, rects)
        self._behind_boxes = {t.track_id: t.box for t in self._live()}

    def _helper_pool(self) -> ThreadPoolExecutor:
        """The helper thread, made on first use at the lowest priority (``steady.SEARCH_NICE``)."""
        if self._helper is None:
            self._helper = ThreadPoolExecutor(1, thread_name_prefix="henshin-search", initializer=lower_priority,
                                              initargs=(SEARCH_NICE,))
        return self._helper

    def _detect_behind(self, frame: Any, rects: list[Rect]) -> list[Detection]:
        if self._helper_backend is None:
            self._helper_backend = self.backend.for_thread()
        found = self._helper_backend.detect([frame] * len(rects), rects)
        return _apart([d for ds in found for d in ds])

    def _take_found(self, frame: Any) -> Steps:
        """Add the faces a finished search behind found (their mesh runs on this frame).

        Its detections are of a frame some frames back: one that overlaps a face tracked on that frame
        is that face, wherever it has moved since (compared with where the face is now, a moving face
        looked new, and a mesh was started on it for nothing: two faces, 30 ms of a live frame)."""
        if self._behind is None or not self._behind.done():
            return
        found, self._behind = self._behind.result(), None
        live = {t.track_id for t in self._live()}
        tracked = [box for track_id, box in self._behind_boxes.items() if track_id in live]
        found = [d for d in found if not _is_one_of(d.box, tracked)]
        if found:
            yield from self._add_found(frame, found)

    def _add_detections(self, frame: Any, detections: list[Detection]) -> Steps:
        """A mesh on each detection not already tracked, largest first, up to ``max_faces``; as
        many at once as there is room for (a mesh that finds no face leaves room for the next)."""
        pending = list(detections)
        while pending:
            room = self.config.max_faces - len(self._live())
            chunk: list[Detection] = []
            while pending and len(chunk) < room:
                d = pending.pop(0)
                if not _is_one_of(d.box, [t.box for t in self._live()]):
                    chunk.append(d)
            if not chunk:
                return
            started = yield from self._ask("start", frame, chunk)
            for d, mesh in zip(chunk, started, strict=True):
                if mesh is None:
                    continue
                if _is_one_of(d.box, [t.box for t in self._live()]):  # taken by one just added
                    self.backend.release(mesh[1])
                    continue
                self._adopt(*mesh)

    def _adopt(self, landmarks: np.ndarray, state: Any) -> None:
        box = landmark_box(landmarks)
        # A face that reappears within a face-width of a recently lost track gets that track's id back.
        lost = [t for t in self._tracks if t.missing > 0 and _near(box, t.box) < 1.0]
        if lost:
            track = min(lost, key=lambda t: _near(box, t.box))
            self.backend.release(track.state)
            track.landmarks, track.state, track.missing, track.box = landmarks, state, 0, box
        else:
            self._tracks.append(_Track(self._next_id, landmarks, state, 0, box))
            self._next_id += 1

    def _drop_duplicates(self) -> None:
        """Two tracks that converged on one face: the older id wins."""
        kept: list[_Track] = []
        for t in sorted(self._tracks, key=lambda t: t.track_id):
            if t.missing == 0 and any(k.missing == 0 and _iou(t.box, k.box) > 0.5 for k in kept):
                self.backend.release(t.state)
                continue
            kept.append(t)
        self._tracks = kept

    def _end_missing(self) -> None:
        for t in self._tracks:
            if t.missing > self.config.max_missing:
                self.backend.release(t.state)
        self._tracks = [t for t in self._tracks if t.missing <= self.config.max_missing]

    def _live(self) -> list[_Track]:
        return [t for t in self._tracks if t.missing == 0]

    def _tiles(self, image: np.ndarray) -> list[Rect]:
        return _tiles(image.shape[1], image.shape[0]) if self.config.small_faces else []

    def _next_tile(self, image: np.ndarray) -> list[Rect]:
        """One tile, the next in turn: the every-frame search covers the frame over a few frames."""
        tiles = self._tiles(image)
        if not tiles:
            return []
        self._tile_turn = (self._tile_turn + 1) % len(tiles)
        return [tiles[self._tile_turn]]


def track_streams(
    trackers: Sequence[FaceTracker], images: Sequence[np.ndarray]
) -> list[TrackUpdate]:
    """One frame of each of several independent streams, each backend call batched over them all.

    Every tracker keeps its own ROI chain; only the network calls are shared, so each update
    equals ``tracker.track(image)`` alone. Trackers batch together when they share a backend.
    """
    steps = [t._steps(image) for t, image in zip(trackers, images, strict=True)]
    updates: list[Any] = [None] * len(steps)
    replies: list[Any] = [None] * len(steps)
    pending = list(range(len(steps)))
    while pending:
        calls: dict[int, _Call] = {}
        for i in pending:
            try:
                calls[i] = steps[i].send(replies[i])
            except StopIteration as done:
                updates[i] = done.value
        pending = list(calls)
        groups: dict[tuple[int, str], list[int]] = {}
        for i, call in calls.items():
            groups.setdefault((id(trackers[i].backend), call.kind), []).append(i)
        for (_, kind), group in groups.items():
            frames = [calls[i].frame for i in group for _ in calls[i].items]
            items = [item for i in group for item in calls[i].items]
            results = getattr(trackers[group[0]].backend, kind)(frames, items)
            for i in group:
                replies[i], results = results[: len(calls[i].items)], results[len(calls[i].items) :]
    return updates


def _apart(detections: list[Detection]) -> list[Detection]:
    """Largest first, each dropped that overlaps a larger one (the same face in two tiles)."""
    kept: list[Detection] = []
    for d in sorted(
        detections, key=lambda d: (d.box[2] - d.box[0]) * (d.box[3] - d.box[1]), reverse=True
    ):
        if all(_iou(d.box, k.box) < 0.3 for k in kept):
            kept.append(d)
    return kept


def _tiles(width: int, height: int, side_frac: float = 0.6, overlap: float = 0.25) -> list[Rect]:
    """Overlapping square tiles covering the frame, each 60 % of its short side.

    The detector letterboxes its input to a square and misses faces under about
    7 % of the long side; square tiles of 0.6× the short side find faces down to
    about 4 % of the short side (45 px in 1080p), and the overlap keeps any face
    whole in at least one tile.
    """
    side = int(min(width, height) * side_frac)
    if side < 128:
        return []
    step = max(1, int(side * (1 - overlap)))

    def starts(total: int) -> list[int]:
        out = list(range(0, max(total - side, 0) + 1, step))
        if out[-1] + side < total:
            out.append(total - side)
        return out

    return [(x, y, x + side, y + side) for y in starts(height) for x in starts(width)]


def _jumped(before: np.ndarray, after: np.ndarray, max_scale_step: float, max_shift: float) -> bool:
    """Whether a face's landmarks moved between two frames further than ``max_scale_step`` in size
    or ``max_shift`` of its size in place (``_spread``: turning or tilting the head leaves it as it
    is, a zoom scales it)."""
    a, b = np.asarray(before, np.float64), np.asarray(after, np.float64)
    ca, cb = a.mean(0), b.mean(0)
    sa, sb = _spread(a), _spread(b)
    if sa <= 0 or sb <= 0:
        return False
    step = max(sb / sa, sa / sb)
    return step > max_scale_step or float(np.hypot(*(cb[:2] - ca[:2]))) > max_shift * sa


SETTLING = 3  # frames a new track's landmarks take to settle from the detector's framing (steps of a third of a face)


def _unexpected(track: _Track, landmarks: np.ndarray, scale_step: float, shift: float) -> bool:
    """Whether ``landmarks`` break from the track's motion of the frame before: its centre more than
    ``shift`` of its size from where that motion leads, or its size more than ``scale_step`` off it.
    Smooth motion, even fast, keeps on its way; a cut leaves it. A settling track is not judged."""
    if track.before is None or track.followed < SETTLING:
        return False
    points = [np.asarray(p, np.float64) for p in (track.before, track.landmarks, landmarks)]
    (c0, c1, c2), (s0, s1, s2) = [p[:, :2].mean(0) for p in points], [_spread(p) for p in points]
    if min(s0, s1, s2) <= 0:
        return False
    change = (s2 / s1) / (s1 / s0)
    return max(change, 1 / change) > scale_step or float(np.hypot(*(c2 - 2 * c1 + c0))) > shift * s1


def _spread(points: np.ndarray) -> float:
    """RMS 3-D distance of the points from their centre: a face's size, whatever its pose."""
    p = np.asarray(points, np.float64)
    return float(np.sqrt(((p - p.mean(0)) ** 2).sum(1).mean()))


def _disagree(a: np.ndarray, b: np.ndarray, tolerance: float) -> bool:
    """Whether two meshes of one face differ by more than ``tolerance`` of its spread (mean 2-D
    distance of the points)."""
    return mean_shift(a, b) > tolerance * max(_spread(a), 1e-6)


def _is_one_of(box: Box, tracked: Sequence[Box]) -> bool:
    """Whether a detection's box is one of the tracked faces' (it overlaps one by more than 0.3 IoU)."""
    return any(_iou(box, other) > 0.3 for other in tracked)


def _near(a: Box, b: Box) -> float:
    """Distance between box centres in units of the larger box's side."""
    side = max(a[2] - a[0], a[3] - a[1], b[2] - b[0], b[3] - b[1], 1e-6)
    return float(np.hypot((a[0] + a[2] - b[0] - b[2]) / 2, (a[1] + a[3] - b[1] - b[3]) / 2) / side)


def _iou(a: Box, b: Box) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0
