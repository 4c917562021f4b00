"""Face tracking: mediapipe detection + face mesh, with a stable id per face.

Each tracked face is followed by re-running the face mesh on a region around
its previous landmarks (mediapipe's own tracking idea, done per face so several
faces and small faces work). The full-range detector runs on a downscaled copy
of the frame, and on overlapping tiles of a larger copy to find small faces,
only when a face may be missing: at the start, on the frame a track is lost,
every ``detect_every`` frames while fewer than ``max_faces`` are tracked, and
on every frame while no face is tracked (a fade-in, an empty room) or a lost
track has not yet ended. The full-frame pass always runs; the tiles all run
at the start, when a track is lost and on the scheduled frames (live: one tile
in turn there too, see ``sweep_tiles``), and one tile per frame in turn on the
other searching frames, so the every-frame search
stays cheap and a small face is still found within a few frames. Live
(``search_behind``), the scheduled look while every face is held runs in a helper
thread on a detector of its own, and a face it finds joins at the next frame:
the frame that scheduled it waits for no detector. Dark frames
(a fade) are brightened for the detector and the mesh. A face whose landmarks
jump in size or place between two frames further than a head moves (a zoom cut,
which leaves the colours as they were) ends its track and is found afresh.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import cv2
import numpy as np

from henshin.kernels.landmarks import eye_centers
from henshin.types import Face

MESH_SIZE = 256  # side of the square region the face mesh sees
ROI_SCALE = 1.7  # region side / landmark box side; mediapipe's tracker uses about 1.5


@dataclass
class TrackerConfig:
    """How faces are found and followed."""

    max_faces: int = 4
    detect_every: int = 15
    detect_size: int = 640
    small_faces: bool = True
    min_confidence: float = 0.5
    max_missing: int = 5
    # On the scheduled look for new faces (every ``detect_every`` frames): the whole frame and every
    # small-face tile at once (offline), or the whole frame and one tile in turn (live: nine detector
    # runs in one frame would be a latency spike every half second).
    sweep_tiles: bool = True
    # Live: the scheduled look for new faces, while every tracked face is held, runs in a helper thread
    # (its own detector) and what it finds joins at the next frame, so that frame does not wait for
    # the detector (two runs, whole frame and a tile: 2 x 17 ms on 2 cores). The first frame, a lost
    # face and a frame with no face search at once, as before.
    search_behind: bool = False
    # Which tracker: ``mediapipe`` (its Python graphs, CPU) or ``torch`` (its networks in torch,
    # henshin.engine.torch_tracking, on ``device``).
    kind: str = "mediapipe"
    device: str = "cpu"
    # A face whose size (the landmarks' 3-D spread, which turning the head leaves alone) changes by
    # more than this factor from one frame to the next, or whose centre moves by more than
    # ``max_shift`` of that spread (about two thirds of the face's width; a fast pan moves a face
    # by a quarter), has jumped further than a head moves in a frame: a zoom cut the colour
    # histograms do not see. Its track ends and a fresh mesh finds the face again.
    max_scale_step: float = 1.2
    max_shift: float = 2.0


@dataclass(slots=True)
class TrackUpdate:
    """One frame's tracking: the faces, and the track ids that started or ended with this frame."""

    faces: list[Face]
    started: list[int] = field(default_factory=list)
    ended: list[int] = field(default_factory=list)


@dataclass
class _Track:
    track_id: int
    landmarks: np.ndarray
    mesh: object  # this face's own mediapipe FaceMesh in tracking mode
    missing: int = 0
    box: tuple[float, float, float, float] = field(default=(0, 0, 0, 0))


class FaceTracker:
    """Finds faces in frames and keeps a stable id for each across frames."""

    def __init__(self, config: TrackerConfig | None = None) -> None:
        # mediapipe is imported with the first tracker (``_new_detector``): its graphs are heavy, and
        # a run of whole-frame filters never needs them.
        self.config = config or TrackerConfig()
        self._detector = self._new_detector()
        self._tracks: list[_Track] = []
        self._started: set[int] = set()  # tracks whose start was reported and whose end was not yet
        self._next_id = 0
        self._frames = 0
        self._tile_turn = -1
        self._helper: ThreadPoolExecutor | None = None  # search_behind: the helper thread, its detector
        self._helper_detector: object | None = None
        self._behind: Future | None = None  # the search running behind, if any

    def __call__(self, image: np.ndarray) -> list[Face]:
        """Landmarks for every face in an (H, W, 3) uint8 RGB frame, with track ids."""
        return self.track(image).faces

    def track(self, image: np.ndarray) -> TrackUpdate:
        """This frame's faces, and the tracks that started and ended with it.

        A track starts the first time its face is returned and ends when it has
        been missing for more than ``max_missing`` frames (or the tracker closes):
        its id is never used again.
        """
        cfg = self.config
        lost = False
        jumped: list[np.ndarray] = []
        for track in self._tracks:
            if track.missing:  # lost earlier: only a detection can bring it back
                track.missing += 1
                continue
            landmarks = _mesh_in_region(track.mesh, image, _region_from_landmarks(track.landmarks))
            if landmarks is None:
                track.missing = 1
                lost = True
            elif _jumped(track.landmarks, landmarks, cfg.max_scale_step, cfg.max_shift):
                jumped.append(landmarks)
                track.mesh.close()
                track.missing = cfg.max_missing + 1  # ends now, and no detection may take its id back
            else:
                track.landmarks, track.missing = landmarks, 0
                track.box = _box(landmarks)
        if jumped:
            self._tracks = [t for t in self._tracks if t.missing <= cfg.max_missing]
            lost = lost or not self._refind(image, jumped)
        self._take_found(image)
        live = len(self._live())
        due = self._frames % cfg.detect_every == 0 and live < cfg.max_faces
        searching = live == 0 or any(t.missing for t in self._tracks)
        if self._frames == 0 or lost or (due and cfg.sweep_tiles):
            self._add_detected(image, self._tiles(image))
        elif due and cfg.search_behind and not searching:
            self._search_behind(image, self._next_tile(image))
        elif due or searching:
            self._add_detected(image, self._next_tile(image))
        self._drop_duplicates()
        for t in self._tracks:
            if t.missing > cfg.max_missing:
                t.mesh.close()
        self._tracks = [t for t in self._tracks if t.missing <= cfg.max_missing]
        self._frames += 1
        faces = [Face(t.track_id, t.landmarks) for t in self._live()]
        after = {t.track_id for t in self._tracks}
        # A reported track dropped inside this call (a duplicate, or missing too long) ends now.
        ended = sorted(self._started - after)
        self._started -= set(ended)
        started = sorted(f.track_id for f in faces if f.track_id not in self._started)
        self._started.update(started)
        return TrackUpdate(faces, started, ended)

    def end_all(self) -> list[int]:
        """End every track (a shot change, or the end of the stream); returns their ids."""
        ended = sorted(self._started)
        self._behind = None  # what a search behind finds belongs to the frames before
        for t in self._tracks:
            t.mesh.close()
        self._tracks, self._started = [], set()
        self._frames = 0  # the next frame is searched as a stream's first: all tiles, for small faces
        return ended

    def close(self) -> None:
        """Release mediapipe's graphs."""
        self.end_all()
        self._detector.close()
        if self._helper is not None:
            self._helper.shutdown(wait=True)
            self._helper = None
        if self._helper_detector is not None:
            self._helper_detector.close()
            self._helper_detector = None

    def _drop_duplicates(self) -> None:
        """Two tracks that converged on one face: the older id wins."""
        kept: list[_Track] = []
        for t in sorted(self._tracks, key=lambda t: t.track_id):
            if t.missing == 0 and any(k.missing == 0 and _iou(t.box, k.box) > 0.5 for k in kept):
                t.mesh.close()
                continue
            kept.append(t)
        self._tracks = kept

    def _live(self) -> list[_Track]:
        return [t for t in self._tracks if t.missing == 0]

    def _tiles(self, image: np.ndarray) -> list[tuple[int, int, int, int]]:
        return _tiles(image.shape[1], image.shape[0]) if self.config.small_faces else []

    def _next_tile(self, image: np.ndarray) -> list[tuple[int, int, int, int]]:
        """One tile, the next in turn: the every-frame search covers the frame over a few frames."""
        tiles = self._tiles(image)
        if not tiles:
            return []
        self._tile_turn = (self._tile_turn + 1) % len(tiles)
        return [tiles[self._tile_turn]]

    def _add_detected(self, image: np.ndarray, tiles: list[tuple[int, int, int, int]]) -> None:
        self._add_found(image, self._detect(image, tiles))

    def _search_behind(self, image: np.ndarray, tiles: list[tuple[int, int, int, int]]) -> None:
        """Start the scheduled search in the helper thread (unless one still runs); ``_take_found`` collects it."""
        if self._behind is not None:
            return
        if self._helper is None:
            self._helper = ThreadPoolExecutor(1, thread_name_prefix="henshin-search")
        self._behind = self._helper.submit(self._detect_behind, image, tiles)

    def _detect_behind(self, image: np.ndarray, tiles: list[tuple[int, int, int, int]]
                       ) -> list[tuple[float, float, float, float]]:
        if self._helper_detector is None:  # mediapipe graphs are not shared between threads
            self._helper_detector = self._new_detector()
        return self._detect(image, tiles, self._helper_detector)

    def _take_found(self, image: np.ndarray) -> None:
        """Add the faces a finished search behind found (their mesh runs on this frame)."""
        if self._behind is None or not self._behind.done():
            return
        boxes, self._behind = self._behind.result(), None
        if boxes:
            self._add_found(image, boxes)

    def _add_found(self, image: np.ndarray, boxes: list[tuple[float, float, float, float]]) -> None:
        first_new = self._next_id
        self._add_boxes(image, boxes)
        # Faces that appear in the same frame are numbered left to right (then top to bottom),
        # so ``--face 0`` is predictable for people who enter together.
        new = sorted((t for t in self._tracks if t.track_id >= first_new),
                     key=lambda t: (t.box[0] + t.box[2], t.box[1] + t.box[3]))
        for i, t in enumerate(new):
            t.track_id = first_new + i

    def _refind(self, image: np.ndarray, jumped: list[np.ndarray]) -> bool:
        """New tracks from fresh meshes around faces that jumped; whether every one was found."""
        found = True
        for landmarks in jumped:
            # Twice: a probe around where the face jumped to, then the track's own mesh on a region
            # framed by the probe's landmarks. A tracking mesh keeps its last face position in its
            # input's coordinates, so its first region must be framed as the next ones will be.
            fresh, mesh = landmarks, None
            for _ in range(2):
                if mesh is not None:
                    mesh.close()
                mesh = self._new_mesh()
                fresh = _mesh_in_region(mesh, image, _region_from_landmarks(fresh))
                if fresh is None:
                    break
            if fresh is None:
                mesh.close()
                found = False
                continue
            self._tracks.append(_Track(self._next_id, fresh, mesh, 0, _box(fresh)))
            self._next_id += 1
        return found

    def _add_boxes(self, image: np.ndarray, boxes: list[tuple[float, float, float, float]]) -> None:
        for box in boxes:
            if len(self._live()) >= self.config.max_faces:
                return
            if any(_iou(box, t.box) > 0.3 for t in self._live()):
                continue
            mesh = self._new_mesh()
            landmarks = _mesh_in_region(mesh, image, _region_from_box(box))
            if landmarks is None:
                mesh.close()
                continue
            lm_box = _box(landmarks)
            # A face that reappears within a face-width of a recently lost track
            # gets that track's id back.
            lost = [t for t in self._tracks if t.missing > 0 and _near(lm_box, t.box) < 1.0]
            if lost:
                track = min(lost, key=lambda t: _near(lm_box, t.box))
                track.mesh.close()
                track.landmarks, track.mesh, track.missing, track.box = landmarks, mesh, 0, lm_box
            else:
                self._tracks.append(_Track(self._next_id, landmarks, mesh, 0, lm_box))
                self._next_id += 1

    def _detect(self, image: np.ndarray, tiles: list[tuple[int, int, int, int]], detector: object = None
                ) -> list[tuple[float, float, float, float]]:
        """Face boxes (x0, y0, x1, y1) in frame pixels, largest first: the whole frame, then ``tiles``."""
        cfg = self.config
        h, w = image.shape[:2]
        boxes = self._detect_scaled(image, (0, 0, w, h), cfg.detect_size, detector)
        for rect in tiles:
            boxes += self._detect_scaled(image, rect, cfg.detect_size, detector)
        boxes.sort(key=lambda b: (b[2] - b[0]) * (b[3] - b[1]), reverse=True)
        kept: list[tuple[float, float, float, float]] = []
        for b in boxes:
            if all(_iou(b, k) < 0.3 for k in kept):
                kept.append(b)
        return kept

    def _detect_scaled(self, image: np.ndarray, rect: tuple[int, int, int, int], size: int,
                       detector: object = None) -> list:
        x0, y0, x1, y1 = rect
        part = image[y0:y1, x0:x1]
        scale = min(1.0, size / max(part.shape[:2]))
        small = cv2.resize(part, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA) if scale < 1 else part
        result = (detector or self._detector).process(np.ascontiguousarray(brighten(small)))
        out = []
        ph, pw = part.shape[:2]
        for det in result.detections or []:
            bb = det.location_data.relative_bounding_box
            out.append((x0 + bb.xmin * pw, y0 + bb.ymin * ph,
                        x0 + (bb.xmin + bb.width) * pw, y0 + (bb.ymin + bb.height) * ph))
        return out

    def _new_detector(self) -> object:
        import mediapipe as mp

        return mp.solutions.face_detection.FaceDetection(
            model_selection=1, min_detection_confidence=self.config.min_confidence
        )

    def _new_mesh(self) -> object:
        # Tracking mode: the mesh follows the face inside our moving region and
        # only re-detects when it loses it; cheaper and steadier than detecting
        # on every frame.
        import mediapipe as mp

        return mp.solutions.face_mesh.FaceMesh(
            static_image_mode=False, max_num_faces=1, refine_landmarks=True,
            min_detection_confidence=self.config.min_confidence,
            min_tracking_confidence=self.config.min_confidence,
        )


DARK_LEVEL = 96  # a picture whose 99th percentile is below this is stretched for the networks


def brighten(image: np.ndarray) -> np.ndarray:
    """A dark (H, W, 3) uint8 picture stretched so its 99th percentile reaches twice ``DARK_LEVEL``.

    The detector and the mesh miss faces in the first frames of a fade from black;
    the stretch brings them back. Pictures that are not dark are returned as they are.
    """
    level = float(np.percentile(image[::4, ::4], 99))
    if level >= DARK_LEVEL or level < 1.0:
        return image
    return cv2.convertScaleAbs(image, alpha=2 * DARK_LEVEL / level)


def _tiles(width: int, height: int, side_frac: float = 0.6, overlap: float = 0.25) -> list[tuple[int, int, int, int]]:
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


def _region_from_landmarks(landmarks: np.ndarray) -> np.ndarray:
    """(cx, cy, side, angle) of a square around the face, rotated with the eye line."""
    x0, y0, x1, y1 = _box(landmarks)
    left, right = eye_centers(landmarks)
    dx, dy = left - right
    return np.array([(x0 + x1) / 2, (y0 + y1) / 2, max(x1 - x0, y1 - y0) * ROI_SCALE,
                     np.arctan2(dy, dx)])


def _region_from_box(box: tuple[float, float, float, float]) -> np.ndarray:
    x0, y0, x1, y1 = box
    # A detector box covers eyes to mouth; the mesh wants the whole head.
    return np.array([(x0 + x1) / 2, (y0 + y1) / 2, max(x1 - x0, y1 - y0) * 2.0, 0.0])


def _region_matrix(region: np.ndarray) -> np.ndarray:
    """Frame→mesh-input affine of a rotated square region."""
    cx, cy, side, angle = region
    scale = MESH_SIZE / side
    c, s = np.cos(-angle) * scale, np.sin(-angle) * scale
    return np.array([[c, -s, MESH_SIZE / 2 - c * cx + s * cy],
                     [s, c, MESH_SIZE / 2 - s * cx - c * cy]], np.float64)


def _box(landmarks: np.ndarray) -> tuple[float, float, float, float]:
    xy = landmarks[:, :2]
    (x0, y0), (x1, y1) = xy.min(0), xy.max(0)
    return float(x0), float(y0), float(x1), float(y1)


def _jumped(before: np.ndarray, after: np.ndarray, max_scale_step: float, max_shift: float) -> bool:
    """Whether a face's landmarks moved between two frames further than a head can.

    Size is the RMS 3-D distance of the points from their centre: turning or
    tilting the head leaves it as it is, a zoom scales it.
    """
    a, b = np.asarray(before, np.float64), np.asarray(after, np.float64)
    ca, cb = a.mean(0), b.mean(0)
    sa = float(np.sqrt(((a - ca) ** 2).sum(1).mean()))
    sb = float(np.sqrt(((b - cb) ** 2).sum(1).mean()))
    if sa <= 0 or sb <= 0:
        return False
    step = max(sb / sa, sa / sb)
    return step > max_scale_step or float(np.hypot(*(cb[:2] - ca[:2]))) > max_shift * sa


def _near(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> float:
    """Distance between box centres in units of the larger box's side."""
    side = max(a[2] - a[0], a[3] - a[1], b[2] - b[0], b[3] - b[1], 1e-6)
    return float(np.hypot((a[0] + a[2] - b[0] - b[2]) / 2, (a[1] + a[3] - b[1] - b[3]) / 2) / side)


def _iou(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _mesh_in_region(mesh: object, image: np.ndarray, region: np.ndarray) -> np.ndarray | None:
    """Run the face mesh on an oriented square region; landmarks in frame pixels or None."""
    matrix = _region_matrix(region)
    crop = cv2.warpAffine(image, matrix, (MESH_SIZE, MESH_SIZE), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT)
    result = mesh.process(brighten(crop))
    if not result.multi_face_landmarks:
        return None
    lm = result.multi_face_landmarks[0].landmark
    pts = np.array([(p.x, p.y, p.z) for p in lm], np.float64) * MESH_SIZE
    inverse = cv2.invertAffineTransform(matrix)
    out = np.empty((len(pts), 3), np.float32)
    out[:, :2] = pts[:, :2] @ inverse[:, :2].T + inverse[:, 2]
    out[:, 2] = pts[:, 2] * np.sqrt(abs(np.linalg.det(inverse[:, :2])))
    return out
