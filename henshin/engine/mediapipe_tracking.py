"""The mediapipe backend of ``FaceTracker``: mediapipe's own Python graphs, on the CPU.

The full-range detector runs on each rectangle asked for (the whole frame or a small-face tile),
downscaled to ``detect_size``. Each face has its own face mesh graph in tracking mode (with the
attention model: 478 points, irises included), fed an oriented square cut around the face, so
several faces and small faces work; the mesh follows the face inside that moving square and
re-detects only when it loses it, cheaper and steadier than detecting on every frame. Dark
pictures (a fade) are brightened for both. The meshes of several faces run side by side, one per
thread: a mesh runs on one core, and a live frame waits for the last face's.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import cv2
import numpy as np

from henshin.engine.trackbase import (
    Box,
    Detection,
    Rect,
    Seed,
    TrackerConfig,
    blank_frame,
    brighten,
    landmark_box,
)
from henshin.kernels.landmarks import eye_centers
from henshin.optional import import_mediapipe

MESH_SIZE = 256  # side of the square region the face mesh sees
ROI_SCALE = 1.7  # region side / landmark box side; mediapipe's tracker uses about 1.5


class MediapipeBackend:
    """mediapipe's full-range detector and one tracking face mesh per face (``--tracker mediapipe``)."""

    def __init__(self, config: TrackerConfig) -> None:
        # imported with the first tracker: its graphs are heavy, and a run of whole-frame filters never needs them
        self._mp = import_mediapipe("--tracker mediapipe", "use --tracker torch")
        self._config = config
        self._detect_size = config.detect_size
        self._confidence = config.min_confidence
        self._detector = self._mp.solutions.face_detection.FaceDetection(
            model_selection=1, min_detection_confidence=config.min_confidence
        )
        self._spare: list[Any] = []  # meshes made and run once ahead of the faces that will need them
        self._reset: list[Any] = []  # meshes of ended tracks, reset: a new face's next choice
        self._pool: ThreadPoolExecutor | None = None  # runs the meshes of the second face and after
        self._looker: Any = None  # the static-image mesh of ``look``

    def prepare(self, image: np.ndarray) -> np.ndarray:
        """The frame as it is: each graph is fed its own (brightened) cut."""
        return image

    def detect(self, frames: Sequence[np.ndarray], rects: Sequence[Rect]) -> list[list[Detection]]:
        """The faces in each rectangle, downscaled to ``detect_size``."""
        return [
            [Detection(b) for b in self._detect_scaled(f, r)]
            for f, r in zip(frames, rects, strict=True)
        ]

    def follow(
        self, frames: Sequence[np.ndarray], faces: Sequence[tuple[np.ndarray, Any]]
    ) -> list[np.ndarray | None]:
        """Each face's own mesh on a square around its last landmarks, the faces side by side.

        A face's mesh is its own graph, fed its own frames in order whichever thread runs it, so the
        landmarks are those of one face after another (two faces, live: 16 against 11 ms a frame).
        """
        return self._side_by_side(
            [(mesh, f, _region_from_landmarks(lm)) for f, (lm, mesh) in zip(frames, faces, strict=True)]
        )

    def start(
        self, frames: Sequence[np.ndarray], seeds: Sequence[Seed]
    ) -> list[tuple[np.ndarray, Any] | None]:
        """A new tracking mesh per seed, kept where it finds a face; the seeds side by side."""
        jobs = [(self._new_mesh(), frame, _region_from_seed(seed)) for frame, seed in zip(frames, seeds, strict=True)]
        out: list[tuple[np.ndarray, Any] | None] = []
        for (mesh, _, _), landmarks in zip(jobs, self._side_by_side(jobs), strict=True):
            if landmarks is None:  # it found no face, so it holds none: a spare for the next start
                self._spare.append(mesh)
            out.append(None if landmarks is None else (landmarks, mesh))
        return out

    def look(self, frames: Sequence[np.ndarray], seeds: Sequence[Seed]) -> list[np.ndarray | None]:
        """The landmarks a new mesh finds at each seed, from a static-image mesh: the same graph as a
        tracking mesh's first run, with nothing to reset afterwards. A tracking mesh started for a look
        and reset returned at once, but its graph's restart then ran in its own threads, and the next
        network run beside it took 37-40 against 27 ms (a 192-px style network, measured). One graph
        looks at the seeds in turn: faces looked at together are rare (a small cut of several faces),
        and a graph more is 30 MB and a 45 ms first run."""
        looker = self._look_mesh()
        return [_mesh_in_region(looker, frame, _region_from_seed(seed)) for frame, seed in zip(frames, seeds, strict=True)]

    def _side_by_side(self, jobs: Sequence[tuple[Any, np.ndarray, np.ndarray]]) -> list[np.ndarray | None]:
        """``_mesh_in_region`` of each (mesh, frame, region), the first here and the others on the pool's threads."""
        if len(jobs) < 2:
            return [_mesh_in_region(*job) for job in jobs]
        if self._pool is None:
            workers = max(self._config.max_faces - 1, 1)
            self._pool = ThreadPoolExecutor(workers, thread_name_prefix="henshin-mesh")
        others = [self._pool.submit(_mesh_in_region, *job) for job in jobs[1:]]
        first = _mesh_in_region(*jobs[0])
        return [first, *(future.result() for future in others)]

    def release(self, state: Any) -> None:
        """Reset a face's mesh graph for a face to come (up to ``max_faces`` kept), or close it.

        A reset graph holds no face and starts one as a new graph would, in about half the time:
        26 against 47 ms for its first run (measured; a cut or a jump starts every face again)."""
        if state is None:
            return
        if len(self._reset) < self._config.max_faces:
            state.reset()
            self._reset.append(state)
        else:
            state.close()

    def warm(self, faces: int) -> None:
        """Run the detector once, and make ``faces`` meshes ready: a new mesh's first run builds its
        TFLite delegate (about 45 ms, measured), which a face entering live would wait for. A mesh
        that saw only a blank square holds no face, so it starts a face as a new one would."""
        self._detector.process(blank_frame(self._detect_size))
        blank = np.zeros((MESH_SIZE, MESH_SIZE, 3), np.uint8)
        while len(self._spare) < faces:
            mesh = self._make_mesh()
            mesh.process(blank)
            self._spare.append(mesh)
        if faces and self._looker is None:  # a second look's mesh (``look``), made ready as the spares are
            self._look_mesh().process(blank)

    def for_thread(self) -> MediapipeBackend:
        """Another backend: mediapipe's graphs are not shared between threads."""
        return MediapipeBackend(self._config)

    def close(self) -> None:
        """Close the detector's graph and the spare meshes."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        self._detector.close()
        for mesh in self._spare + self._reset + ([self._looker] if self._looker is not None else []):
            mesh.close()
        self._spare.clear()
        self._reset.clear()
        self._looker = None

    def _detect_scaled(self, image: np.ndarray, rect: Rect) -> list[Box]:
        x0, y0, x1, y1 = rect
        part = image[y0:y1, x0:x1]
        scale = min(1.0, self._detect_size / max(part.shape[:2]))
        small = (
            cv2.resize(part, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
            if scale < 1
            else part
        )
        result = self._detector.process(np.ascontiguousarray(brighten(small)))
        out = []
        ph, pw = part.shape[:2]
        for det in result.detections or []:
            bb = det.location_data.relative_bounding_box
            out.append(
                (
                    x0 + bb.xmin * pw,
                    y0 + bb.ymin * ph,
                    x0 + (bb.xmin + bb.width) * pw,
                    y0 + (bb.ymin + bb.height) * ph,
                )
            )
        return out

    def _new_mesh(self) -> Any:
        if self._spare:
            return self._spare.pop()
        return self._reset.pop() if self._reset else self._make_mesh()

    def _look_mesh(self) -> Any:
        if self._looker is None:
            self._looker = self._make_mesh(static=True)
        return self._looker

    def _make_mesh(self, static: bool = False) -> Any:
        return self._mp.solutions.face_mesh.FaceMesh(
            static_image_mode=static,
            max_num_faces=1,
            refine_landmarks=True,
            min_detection_confidence=self._confidence,
            min_tracking_confidence=self._confidence,
        )


def _region_from_landmarks(landmarks: np.ndarray) -> np.ndarray:
    """(cx, cy, side, angle) of a square around the face, rotated with the eye line."""
    x0, y0, x1, y1 = landmark_box(landmarks)
    left, right = eye_centers(landmarks)
    dx, dy = left - right
    return np.array(
        [(x0 + x1) / 2, (y0 + y1) / 2, max(x1 - x0, y1 - y0) * ROI_SCALE, np.arctan2(dy, dx)]
    )


def _region_from_seed(seed: Seed) -> np.ndarray:
    return _region_from_box(seed.box) if isinstance(seed, Detection) else _region_from_landmarks(seed)


def _region_from_box(box: Box) -> np.ndarray:
    x0, y0, x1, y1 = box
    # A detector box covers eyes to mouth; the mesh wants the whole head.
    return np.array([(x0 + x1) / 2, (y0 + y1) / 2, max(x1 - x0, y1 - y0) * 2.0, 0.0])


def _region_matrix(region: np.ndarray) -> np.ndarray:
    """Frame→mesh-input affine of a rotated square region."""
    cx, cy, side, angle = region
    scale = MESH_SIZE / side
    c, s = np.cos(-angle) * scale, np.sin(-angle) * scale
    return np.array(
        [[c, -s, MESH_SIZE / 2 - c * cx + s * cy], [s, c, MESH_SIZE / 2 - s * cx - c * cy]],
        np.float64,
    )


def _mesh_in_region(mesh: Any, image: np.ndarray, region: np.ndarray) -> np.ndarray | None:
    """Run the face mesh on an oriented square region; landmarks in frame pixels or None."""
    matrix = _region_matrix(region)
    crop = cv2.warpAffine(
        image,
        matrix,
        (MESH_SIZE, MESH_SIZE),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
    )
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
