"""The torch backend of ``FaceTracker``: mediapipe's own detector and mesh networks, CPU or GPU.

mediapipe's graph logic is done in torch (``henshin.nets.facemesh``): every face's mesh of a
call runs in one batch from its ROI (from the previous landmarks, or a detection turned by its
eyes); the full-range detector (the one the mediapipe backend runs) runs on the whole frame and
on small-face tiles, all rectangles of one size in one batch, when a face may be missing. The
bookkeeping is ``FaceTracker``'s.

The networks are read once from the TFLite files in the mediapipe wheel and cached under the
compiled cache, keyed by the file's SHA-256, so a later run needs no mediapipe import.

Landmarks: the plain face mesh gives 468 points; henshin's layout has 478 (mediapipe's
attention model adds the irises, 468–477). Here each iris is placed from its eye's contour: the
centre at the contour's mean and the four ring points at 0.19 eye widths around it — an
approximation (the iris does not follow the gaze), stated in docs/tracker.md.
"""

from __future__ import annotations

import copy
import importlib.util
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from henshin.digest import sha256_file
from henshin.engine.trackbase import (
    Detection,
    Rect,
    Seed,
    blank_frame,
    brighten,
)
from henshin.errors import ModelError

MODEL_FILES = {
    "full_range": ("face_detection", "face_detection_full_range_sparse.tflite"),
    "short_range": ("face_detection", "face_detection_short_range.tflite"),
    "mesh": ("face_landmark", "face_landmark.tflite"),
}
# The tracker detects with the full-range model, as the mediapipe backend does (its sparse weights
# are densified once, at conversion). The short-range one is what mediapipe's own face mesh graph
# detects with: ``load_face_networks(detector="short_range")`` runs that graph's exact logic.
DETECTORS = ("full_range", "short_range")
TRACKER_NETWORKS = ("full_range", "mesh")
PRESENCE = 0.5
# The eye contours of mediapipe's mesh (subject's right eye first, as the iris points 468-472).
RIGHT_EYE = (33, 7, 163, 144, 145, 153, 154, 155, 133, 173, 157, 158, 159, 160, 161, 246)
LEFT_EYE = (263, 249, 390, 373, 374, 380, 381, 382, 362, 398, 384, 385, 386, 387, 388, 466)
IRIS_RADIUS = 0.19  # of the eye's width: an iris is about 11.7 mm across an eye about 30 mm wide


def model_paths() -> dict[str, Path]:
    """The TFLite files inside the installed mediapipe wheel (found without importing it)."""
    spec = importlib.util.find_spec("mediapipe")
    if spec is None or not spec.submodule_search_locations:
        return {}
    root = Path(next(iter(spec.submodule_search_locations))) / "modules"
    paths = {name: root / folder / file for name, (folder, file) in MODEL_FILES.items()}
    return paths if all(p.is_file() for p in paths.values()) else {}


def load_face_networks(
    device: str = "cpu", cache_dir: Path | None = None, detector: str = "full_range"
) -> Any:
    """mediapipe's detector (``full_range``, the tracker's, or ``short_range``) and mesh as one
    torch module on ``device``, converted once and cached."""
    import torch

    from henshin.nets.facemesh import FaceNetworks
    from henshin.nets.tflite import GraphSpec, TFLiteNet, read_tflite
    from henshin.runtimes.cache import read_cached, write_cached
    from henshin.runtimes.options import RuntimeOptions

    folder = _cache_folder(cache_dir, RuntimeOptions)
    paths = model_paths()
    if detector not in DETECTORS:
        raise ValueError(f"expected a detector of {DETECTORS}, got {detector!r}")
    nets = {}
    for name in (detector, "mesh"):
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
    return FaceNetworks(nets[detector], nets["mesh"]).to(torch.device(device))


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


DTYPES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}


class TorchBackend:
    """mediapipe's full-range detector and face mesh in torch (``--tracker torch``), stateless:
    every call runs all its items in one batch (crops of every face and frame by one
    ``grid_sample``, detector inputs of every rectangle of one size together).

    ``dtype``: the networks' precision (fp32; fp16 or bf16 where it holds, see docs/tracker.md);
    the crops, the decoding and the landmarks stay fp32. ``min_score``: the detector's threshold
    (the tracker's ``min_confidence``, as the mediapipe backend's detector is given);
    ``detect_size``: a rectangle larger than this is area-averaged down to it before the detector
    (the tracker's ``detect_size``, as the mediapipe backend does).
    """

    def __init__(
        self,
        device: str = "cpu",
        networks: Any = None,
        dtype: str = "fp32",
        min_score: float = 0.5,
        detect_size: int = 640,
    ) -> None:
        import torch

        self.device = torch.device(device)
        self.min_score, self.detect_size = min_score, detect_size
        nets = networks if networks is not None else load_face_networks(device)
        self.nets = (
            nets if dtype == "fp32" else copy.deepcopy(nets).to(getattr(torch, DTYPES[dtype]))
        )

    def prepare(self, image: np.ndarray) -> Any:
        """(1, 3, H, W) float on the device, brightened when dark."""
        import torch

        pixels = torch.from_numpy(np.ascontiguousarray(brighten(image))).to(self.device)
        return pixels.permute(2, 0, 1)[None].float()

    def detect(self, frames: Sequence[Any], rects: Sequence[Rect]) -> list[list[Detection]]:
        """The faces in each rectangle; rectangles of one size go through the detector together."""
        import torch

        out: list[list[Detection]] = [[] for _ in rects]
        by_size: dict[tuple[int, int], list[int]] = {}
        for i, (x0, y0, x1, y1) in enumerate(rects):
            by_size.setdefault((x1 - x0, y1 - y0), []).append(i)
        with torch.no_grad():
            for (rw, rh), group in by_size.items():
                crops = _shrink(
                    torch.cat([_cut(frames[i], rects[i]) for i in group]), self.detect_size
                )
                scale = np.array([rw, rh], np.float32)
                for i, det in zip(group, self.nets.detect(crops, self.min_score), strict=True):
                    origin = np.array(rects[i][:2], np.float32)
                    for box, kp in zip(
                        det.boxes.cpu().numpy(), det.keypoints.cpu().numpy(), strict=True
                    ):
                        corners = box.reshape(2, 2) * scale + origin
                        out[i].append(
                            Detection(
                                tuple(float(v) for v in corners.ravel()), kp[:2] * scale + origin
                            )
                        )
        return out

    def follow(
        self, frames: Sequence[Any], faces: Sequence[tuple[np.ndarray, Any]]
    ) -> list[np.ndarray | None]:
        """Every face's mesh from the ROI of its last landmarks, in one batch per frame size."""
        return [None if m is None else m[0] for m in self.start(frames, [lm for lm, _ in faces])]

    def start(
        self, frames: Sequence[Any], seeds: Sequence[Seed]
    ) -> list[tuple[np.ndarray, Any] | None]:
        """The mesh from each seed's ROI (a detection's, or landmarks'); None where no face is there."""
        import torch

        out: list[tuple[np.ndarray, Any] | None] = [None] * len(seeds)
        for group, batch, index in _frame_batches(frames):
            h, w = batch.shape[-2:]
            with torch.no_grad():
                points, presence = self.nets.landmarks(
                    batch, index, self._rois([seeds[i] for i in group], w, h)
                )
            for i, p, ok in zip(
                group, add_irises(points.cpu().numpy()), presence.cpu().numpy(), strict=True
            ):
                out[i] = (p, None) if ok >= PRESENCE else None
        return out

    def look(self, frames: Sequence[Any], seeds: Sequence[Seed]) -> list[np.ndarray | None]:
        """``start``'s landmarks: a face's state is its landmarks, so there is nothing to keep or free."""
        return [None if m is None else m[0] for m in self.start(frames, seeds)]

    def release(self, state: Any) -> None:
        """Nothing to free: a face's state is its landmarks."""

    def warm(self, faces: int) -> None:
        """The detector once on a blank frame (the networks hold no per-face state to make ready)."""
        image = blank_frame(self.detect_size)
        self.detect([self.prepare(image)], [(0, 0, image.shape[1], image.shape[0])])

    def for_thread(self) -> TorchBackend:
        """This one: the networks keep no state, and inference runs in any thread."""
        return self

    def close(self) -> None:
        """Nothing to free."""

    def _rois(self, seeds: Sequence[Seed], w: int, h: int) -> Any:
        import torch

        from henshin.nets.facemesh import Rois, roi_from_landmarks, roi_from_points

        marks = [i for i, s in enumerate(seeds) if not isinstance(s, Detection)]
        found = [i for i, s in enumerate(seeds) if isinstance(s, Detection)]
        parts = []
        if marks:
            points = torch.from_numpy(np.stack([seeds[i][:468] for i in marks])).to(self.device)
            parts.append(roi_from_landmarks(points, w, h))
        if found:
            size = np.array([w, h, w, h], np.float32)
            box = torch.from_numpy(
                np.stack([np.array(seeds[i].box, np.float32) / size for i in found])
            )
            eyes = torch.from_numpy(
                np.stack([seeds[i].eyes / size[:2] for i in found]).astype(np.float32)
            )
            box, eyes = box.to(self.device), eyes.to(self.device)
            parts.append(roi_from_points(box, eyes[:, 0], eyes[:, 1], w, h))
        order = torch.from_numpy(np.argsort(marks + found)).to(self.device)
        return Rois(
            *(
                torch.cat([getattr(p, k) for p in parts])[order]
                for k in ("centres", "sides", "rotations")
            )
        )


def _shrink(crops: Any, limit: int) -> Any:
    """Crops whose long side is over ``limit`` area-averaged down to it (aspect kept, sizes rounded
    as OpenCV's resize rounds them). The detector's own letterbox samples bilinearly without a
    low-pass, and from a 1280-pixel frame to its 192 that aliases texture into faces: on the
    sample clip a round badge at 0.54, with a face mesh that took it (presence 0.99)."""
    from torch.nn import functional as F

    h, w = crops.shape[-2:]
    scale = limit / max(h, w)
    if scale >= 1:
        return crops
    return F.interpolate(crops, size=(round(h * scale), round(w * scale)), mode="area")


def _cut(frame: Any, rect: Rect) -> Any:
    x0, y0, x1, y1 = rect
    return frame[:, :, y0:y1, x0:x1]


def _frame_batches(frames: Sequence[Any]) -> list[tuple[list[int], Any, Any]]:
    """Items grouped by frame size: (item positions, the distinct frames stacked, each item's frame)."""
    import torch

    groups: dict[tuple[int, ...], tuple[list[int], list[Any], list[int]]] = {}
    for i, frame in enumerate(frames):
        items, stack, index = groups.setdefault(tuple(frame.shape), ([], [], []))
        known = next((k for k, f in enumerate(stack) if f is frame), None)
        if known is None:
            stack.append(frame)
            known = len(stack) - 1
        items.append(i)
        index.append(known)
    # one frame (a single stream) is used as it is: a cat would copy the whole float frame
    return [
        (
            items,
            stack[0] if len(stack) == 1 else torch.cat(stack),
            torch.tensor(index, device=stack[0].device),
        )
        for items, stack, index in groups.values()
    ]


def check_available(cache_dir: Path | None = None) -> None:
    """One sentence, before any work, when neither mediapipe's files nor a cached conversion is here."""
    if model_paths():
        return
    from henshin.runtimes.cache import read_cached
    from henshin.runtimes.options import RuntimeOptions

    folder = _cache_folder(cache_dir, RuntimeOptions)
    if any(_cached_conversion(folder, n, None, read_cached) is None for n in TRACKER_NETWORKS):
        raise ModelError(
            "the torch tracker needs mediapipe's face models once, to convert them: install "
            "mediapipe (pip install 'henshin[mediapipe]'), run once, and it works without it after."
        )
