"""Face tracking in torch: mediapipe's own detector and mesh networks, on the CPU or a GPU.

The same bookkeeping as ``henshin.engine.tracking.FaceTracker`` (stable ids, numbering left to
right, a lost face's id given back when it reappears nearby, tracks ended after ``max_missing``
frames), with mediapipe's graph logic done in torch (``henshin.nets.facemesh``): every tracked
face's mesh runs in one batch from the ROI of its previous landmarks; the short-range detector
runs on the whole frame and on small-face tiles, all in one batch, when a face may be missing.

The networks are read once from the TFLite files in the mediapipe wheel and cached under the
compiled cache, keyed by the file's SHA-256, so a later run needs no mediapipe import.

Landmarks: the plain face mesh gives 468 points; henshin's layout has 478 (mediapipe's
attention model adds the irises, 468–477). Here each iris is placed from its eye's contour: the
centre at the contour's mean and the four ring points at 0.19 eye widths around it — an
approximation (the iris does not follow the gaze), stated in docs/tracker.md.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from henshin.digest import sha256_file
from henshin.engine.tracking import (
    TrackerConfig,
    TrackUpdate,
    _iou,
    _jumped,
    _near,
    _tiles,
    brighten,
)
from henshin.errors import ModelError
from henshin.types import Face

MODEL_FILES = {
    "detector": ("face_detection", "face_detection_short_range.tflite"),
    "mesh": ("face_landmark", "face_landmark.tflite"),
}
PRESENCE = 0.5
# The eye contours of mediapipe's mesh (subject's right eye first, as the iris points 468-472).
RIGHT_EYE = (33, 7, 163, 144, 145, 153, 154, 155, 133, 173, 157, 158, 159, 160, 161, 246)
LEFT_EYE = (263, 249, 390, 373, 374, 380, 381, 382, 362, 398, 384, 385, 386, 387, 388, 466)
IRIS_RADIUS = 0.19  # of the eye's width: an iris is about 11.7 mm across an eye about 30 mm wide


def model_paths() -> dict[str, Path]:
    """The two TFLite files inside the installed mediapipe wheel (found without importing it)."""
    spec = importlib.util.find_spec("mediapipe")
    if spec is None or not spec.submodule_search_locations:
        return {}
    root = Path(next(iter(spec.submodule_search_locations))) / "modules"
    paths = {name: root / folder / file for name, (folder, file) in MODEL_FILES.items()}
    return paths if all(p.is_file() for p in paths.values()) else {}


def load_face_networks(device: str = "cpu", cache_dir: Path | None = None) -> Any:
    """mediapipe's detector and mesh as one torch module on ``device``, converted once and cached."""
    import torch

    from henshin.nets.facemesh import FaceNetworks
    from henshin.nets.tflite import GraphSpec, TFLiteNet, read_tflite
    from henshin.runtimes.cache import read_cached, write_cached
    from henshin.runtimes.options import RuntimeOptions

    folder = _cache_folder(cache_dir, RuntimeOptions)
    paths = model_paths()
    nets = {}
    for name in MODEL_FILES:
        cached = _cached_conversion(folder, name, paths.get(name), read_cached)
        if cached is None:
            if name not in paths:
                raise ModelError(
                    "the torch tracker needs mediapipe's face models once, to convert them: "
                    "install mediapipe (pip install 'henshin[mediapipe]') or use --tracker mediapipe."
                )
            spec, constants = read_tflite(paths[name])
            _store_conversion(folder, name, paths[name], spec, constants, write_cached)
        else:
            spec, constants = GraphSpec.from_json(cached[0]), cached[1]
        nets[name] = TFLiteNet(spec, constants).eval()
    return FaceNetworks(nets["detector"], nets["mesh"]).to(torch.device(device))


def _cache_folder(cache_dir: Path | None, options_type: Any) -> Path:
    from henshin.runtimes.cache import cache_dir as compiled_dir

    return compiled_dir(options_type(cache_dir=cache_dir)) / "face-tracker"


def _cached_conversion(
    folder: Path, name: str, source: Path | None, read_cached: Any
) -> tuple[str, dict] | None:
    """A cached conversion of ``name``: the one made from ``source`` when mediapipe is installed,
    else the newest there is (mediapipe uninstalled since). Both files are checked against their records."""
    from safetensors.torch import load

    if source is not None:
        keys = [sha256_file(source)[:24]]
    else:
        found = (
            sorted(
                folder.glob(f"{name}-*.safetensors"), key=lambda p: p.stat().st_mtime, reverse=True
            )
            if folder.is_dir()
            else []
        )
        keys = [p.stem.rsplit("-", 1)[1] for p in found]
    for key in keys:
        meta = {"network": name, "source_sha256": key}
        weights = read_cached(folder / f"{name}-{key}.safetensors", meta)
        graph = read_cached(folder / f"{name}-{key}.graph.json", meta)
        if weights is not None and graph is not None:
            return graph.decode(), load(weights)
    return None


def _store_conversion(
    folder: Path, name: str, source: Path, spec: Any, constants: dict, write_cached: Any
) -> None:
    from safetensors.torch import save

    from henshin.outputs import ensure_folder

    ensure_folder(folder, "the cache folder")
    key = sha256_file(source)[:24]
    meta = {"network": name, "source_sha256": key}
    write_cached(folder / f"{name}-{key}.graph.json", spec.to_json().encode(), meta)
    write_cached(
        folder / f"{name}-{key}.safetensors",
        save({k: v.contiguous() for k, v in constants.items()}),
        meta,
    )


def add_irises(points: np.ndarray) -> np.ndarray:
    """(K, 468, 3) → (K, 478, 3): iris centre and ring (right, top, left, bottom) per eye."""
    irises = []
    for eye in (RIGHT_EYE, LEFT_EYE):
        contour = points[:, eye]
        centre = contour.mean(axis=1)
        width = np.linalg.norm(points[:, eye[0], :2] - points[:, eye[8], :2], axis=-1)
        r = (IRIS_RADIUS * width)[:, None]
        ring = [
            centre + np.concatenate([d * r, np.zeros_like(r)], axis=1)
            for d in (
                np.array([1.0, 0.0]),
                np.array([0.0, -1.0]),
                np.array([-1.0, 0.0]),
                np.array([0.0, 1.0]),
            )
        ]
        irises.append(np.stack([centre, *ring], axis=1))
    return np.concatenate([points, *irises], axis=1).astype(np.float32)


@dataclass
class _Track:
    track_id: int
    landmarks: np.ndarray  # (478, 3) frame pixels
    missing: int = 0

    @property
    def box(self) -> tuple[float, float, float, float]:
        xy = self.landmarks[:468, :2]
        (x0, y0), (x1, y1) = xy.min(0), xy.max(0)
        return float(x0), float(y0), float(x1), float(y1)


class TorchFaceTracker:
    """``FaceTracker``'s interface with mediapipe's networks in torch (``--tracker torch``)."""

    def __init__(
        self, config: TrackerConfig | None = None, device: str = "cpu", networks: Any = None
    ) -> None:
        import torch

        self.config = config or TrackerConfig()
        self.device = torch.device(device)
        self.nets = networks if networks is not None else load_face_networks(device)
        self._tracks: list[_Track] = []
        self._started: set[int] = set()
        self._next_id = 0
        self._frames = 0
        self._tile_turn = -1

    def __call__(self, image: np.ndarray) -> list[Face]:
        return self.track(image).faces

    def track(self, image: np.ndarray) -> TrackUpdate:
        """This frame's faces, and the tracks that started and ended with it (as ``FaceTracker``)."""
        import torch

        cfg = self.config
        frame = (
            torch.from_numpy(np.ascontiguousarray(brighten(image)))
            .to(self.device)
            .permute(2, 0, 1)[None]
            .float()
        )
        lost = self._follow(frame, image.shape)
        live = len(self._live())
        due = self._frames % cfg.detect_every == 0 and live < cfg.max_faces
        searching = live == 0 or any(t.missing for t in self._tracks)
        if self._frames == 0 or lost or (due and cfg.sweep_tiles):
            self._add_detected(frame, image.shape, self._all_tiles(image))
        elif due or searching:
            self._add_detected(frame, image.shape, self._next_tile(image))
        self._drop_duplicates()
        self._tracks = [t for t in self._tracks if t.missing <= cfg.max_missing]
        self._frames += 1
        faces = [Face(t.track_id, t.landmarks) for t in self._live()]
        after = {t.track_id for t in self._tracks}
        ended = sorted(self._started - after)
        self._started -= set(ended)
        started = sorted(f.track_id for f in faces if f.track_id not in self._started)
        self._started.update(started)
        return TrackUpdate(faces, started, ended)

    def end_all(self) -> list[int]:
        ended = sorted(self._started)
        self._tracks, self._started, self._frames = [], set(), 0
        return ended

    def close(self) -> None:
        self.end_all()

    # -- steps ---------------------------------------------------------------------------------

    def _follow(self, frame: Any, shape: tuple[int, ...]) -> bool:
        """Every live track's mesh in one batch from its previous landmarks; True when one was lost."""
        import torch

        from henshin.nets.facemesh import roi_from_landmarks

        followed = [t for t in self._tracks if not t.missing]
        for t in self._tracks:
            if t.missing:
                t.missing += 1
        if not followed:
            return False
        h, w = shape[:2]
        previous = torch.from_numpy(np.stack([t.landmarks[:468] for t in followed])).to(self.device)
        with torch.no_grad():
            points, presence = self.nets.landmarks(
                frame,
                torch.zeros(len(followed), dtype=torch.long, device=self.device),
                roi_from_landmarks(previous, w, h),
            )
        points, presence = add_irises(points.cpu().numpy()), presence.cpu().numpy()
        lost = False
        jumped: list[np.ndarray] = []
        cfg = self.config
        for t, p, ok in zip(followed, points, presence, strict=True):
            if ok < PRESENCE:
                t.missing, lost = 1, True
            elif _jumped(t.landmarks, p, cfg.max_scale_step, cfg.max_shift):
                # a zoom cut the colour histograms did not see: the track ends, the face is found afresh
                t.missing = cfg.max_missing + 1
                jumped.append(p)
            else:
                t.landmarks = p
        if jumped:
            self._tracks = [t for t in self._tracks if t.missing <= cfg.max_missing]
            lost = self._refind(frame, shape, jumped) or lost
        return lost

    def _refind(self, frame: Any, shape: tuple[int, ...], jumped: list[np.ndarray]) -> bool:
        """New tracks for faces that jumped: the mesh twice from where each went (a probe, then
        framed as tracking will frame it); True when one was not found again."""
        import torch

        from henshin.nets.facemesh import roi_from_landmarks

        h, w = shape[:2]
        points = torch.from_numpy(np.stack([j[:468] for j in jumped])).to(self.device)
        index = torch.zeros(len(jumped), dtype=torch.long, device=self.device)
        with torch.no_grad():
            for _ in range(2):
                points, presence = self.nets.landmarks(
                    frame, index, roi_from_landmarks(points[..., :468, :], w, h)
                )
        missed = False
        for p, ok in zip(add_irises(points.cpu().numpy()), presence.cpu().numpy(), strict=True):
            if ok >= PRESENCE:
                self._tracks.append(_Track(self._next_id, p))
                self._next_id += 1
            else:
                missed = True
        return missed

    def _add_detected(
        self, frame: Any, shape: tuple[int, ...], tiles: list[tuple[int, int, int, int]]
    ) -> None:
        import torch

        from henshin.nets.facemesh import roi_from_points

        h, w = shape[:2]
        boxes, eyes = self._detect(frame, [(0, 0, w, h), *tiles])
        fresh = [i for i, b in enumerate(boxes) if all(_iou(b, t.box) <= 0.3 for t in self._live())]
        fresh = fresh[: max(0, self.config.max_faces - len(self._live()))]
        if not fresh:
            return
        norm = torch.tensor(
            [[boxes[i][0] / w, boxes[i][1] / h, boxes[i][2] / w, boxes[i][3] / h] for i in fresh],
            device=self.device,
            dtype=torch.float32,
        )
        eye = torch.tensor(
            np.stack([eyes[i] for i in fresh]), device=self.device, dtype=torch.float32
        )
        eye = eye / torch.tensor([w, h], device=self.device, dtype=torch.float32)
        with torch.no_grad():
            points, presence = self.nets.landmarks(
                frame,
                torch.zeros(len(fresh), dtype=torch.long, device=self.device),
                roi_from_points(norm, eye[:, 0], eye[:, 1], w, h),
            )
        first_new = self._next_id
        for p, ok in zip(add_irises(points.cpu().numpy()), presence.cpu().numpy(), strict=True):
            if ok >= PRESENCE:
                self._adopt(p)
        new = sorted(
            (t for t in self._tracks if t.track_id >= first_new),
            key=lambda t: (t.box[0] + t.box[2], t.box[1] + t.box[3]),
        )
        for i, t in enumerate(new):
            t.track_id = first_new + i

    def _adopt(self, landmarks: np.ndarray) -> None:
        track = _Track(-1, landmarks)
        lost = [t for t in self._tracks if t.missing > 0 and _near(track.box, t.box) < 1.0]
        if lost:
            old = min(lost, key=lambda t: _near(track.box, t.box))
            old.landmarks, old.missing = landmarks, 0
        else:
            track.track_id = self._next_id
            self._next_id += 1
            self._tracks.append(track)

    def _detect(
        self, frame: Any, rects: list[tuple[int, int, int, int]]
    ) -> tuple[list[tuple[float, float, float, float]], list[np.ndarray]]:
        """Boxes in frame pixels (largest first, overlaps dropped) and their eye points (2, 2)."""
        import torch

        found: list[tuple[tuple[float, float, float, float], np.ndarray]] = []
        by_size: dict[tuple[int, int], list[tuple[int, int, int, int]]] = {}
        for r in rects:
            by_size.setdefault((r[2] - r[0], r[3] - r[1]), []).append(r)
        with torch.no_grad():
            for (
                rw,
                rh,
            ), group in by_size.items():  # tiles of one size go through the detector together
                crops = torch.cat([frame[:, :, y0:y1, x0:x1] for x0, y0, x1, y1 in group])
                for (x0, y0, _, _), det in zip(group, self.nets.detect(crops), strict=True):
                    scale = np.array([rw, rh], np.float32)
                    for box, kp in zip(
                        det.boxes.cpu().numpy(), det.keypoints.cpu().numpy(), strict=True
                    ):
                        b = (x0 + box[0] * rw, y0 + box[1] * rh, x0 + box[2] * rw, y0 + box[3] * rh)
                        found.append((b, kp[:2] * scale + np.array([x0, y0], np.float32)))
        found.sort(key=lambda f: (f[0][2] - f[0][0]) * (f[0][3] - f[0][1]), reverse=True)
        kept: list[tuple[tuple[float, float, float, float], np.ndarray]] = []
        for f in found:
            if all(_iou(f[0], k[0]) < 0.3 for k in kept):
                kept.append(f)
        return [k[0] for k in kept], [k[1] for k in kept]

    def _drop_duplicates(self) -> None:
        kept: list[_Track] = []
        for t in sorted(self._tracks, key=lambda t: t.track_id):
            if t.missing == 0 and any(k.missing == 0 and _iou(t.box, k.box) > 0.5 for k in kept):
                continue
            kept.append(t)
        self._tracks = kept

    def _live(self) -> list[_Track]:
        return [t for t in self._tracks if t.missing == 0]

    def _all_tiles(self, image: np.ndarray) -> list[tuple[int, int, int, int]]:
        return _tiles(image.shape[1], image.shape[0]) if self.config.small_faces else []

    def _next_tile(self, image: np.ndarray) -> list[tuple[int, int, int, int]]:
        tiles = self._all_tiles(image)
        if not tiles:
            return []
        self._tile_turn = (self._tile_turn + 1) % len(tiles)
        return [tiles[self._tile_turn]]


def check_available(cache_dir: Path | None = None) -> None:
    """One sentence, before any work, when neither mediapipe's files nor a cached conversion is here."""
    if model_paths():
        return
    from henshin.runtimes.cache import cache_dir as compiled_dir
    from henshin.runtimes.options import RuntimeOptions

    folder = compiled_dir(RuntimeOptions(cache_dir=cache_dir)) / "face-tracker"
    if not all(any(folder.glob(f"{name}-*.safetensors")) for name in MODEL_FILES):
        raise ModelError(
            "the torch tracker needs mediapipe's face models once, to convert them: install "
            "mediapipe (pip install 'henshin[mediapipe]'), run once, and it works without it after."
        )
