"""Tracker scenario: ms per frame of the mediapipe tracker and the torch tracker, 1/2/4 faces.

    python -m bench tracker [--quick] [--out DIR]

Both trackers follow the same 1280×720 clip (the sample face tiled 1, 2 and 4 times) from a
standing start; the first frame (detection on every tile) is left out of the timing, as a
warm-up. The torch tracker runs on the CPU here, and on CUDA as well where there is a GPU
(there also in fp16). Then four streams of the one-face clip tracked together
(``track_streams``: each backend call batched over the four) against one after another.
"""

from __future__ import annotations

import importlib.util
import tempfile
import time
from pathlib import Path
from typing import Any

import av
import numpy as np

from bench.clips import make_clip
from bench.harness import repeat, repeat_each, scenario, spread
from henshin.engine.tracking import FaceTracker, TrackerConfig, track_streams


def _frames(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]


def _ms_per_frame(make: Any, frames: list[np.ndarray]) -> float:
    tracker = make()
    try:
        tracker.track(frames[0])
        start = time.perf_counter()
        for frame in frames[1:]:
            tracker.track(frame)
        return (time.perf_counter() - start) * 1000 / (len(frames) - 1)
    finally:
        tracker.close()


def _makers(faces: int) -> dict[str, Any]:
    config = TrackerConfig(max_faces=faces)
    makers: dict[str, Any] = {"mediapipe": lambda: FaceTracker(config)}
    try:
        import torch

        from henshin.engine.torch_tracking import TorchBackend, load_face_networks
    except ImportError:
        return makers
    cpu = load_face_networks("cpu")
    makers["torch cpu"] = lambda: FaceTracker(config, TorchBackend("cpu", cpu))
    if torch.cuda.is_available():
        gpu = load_face_networks("cuda")
        makers["torch cuda"] = lambda: FaceTracker(config, TorchBackend("cuda", gpu))
        makers["torch cuda fp16"] = lambda: FaceTracker(config, TorchBackend("cuda", gpu, "fp16"))
    return makers


def _streams(device: str, frames: list[np.ndarray], quick: bool, streams: int = 4) -> list[dict[str, Any]]:
    """ms per frame of each stream: ``streams`` trackers stepped together, then one after another."""
    from henshin.engine.torch_tracking import TorchBackend, load_face_networks

    backend = TorchBackend(device, load_face_networks(device))

    def run(together: bool) -> float:
        trackers = [FaceTracker(TrackerConfig(max_faces=1), backend) for _ in range(streams)]
        track_streams(trackers, [frames[0]] * streams)
        start = time.perf_counter()
        if together:
            for frame in frames[1:]:
                track_streams(trackers, [frame] * streams)
        else:
            for tracker in trackers:
                for frame in frames[1:]:
                    tracker.track(frame)
        return (time.perf_counter() - start) * 1000 / (len(frames) - 1) / streams

    together, alone = repeat_each([lambda: run(True), lambda: run(False)], quick)
    return [{"name": f"torch {device} {streams} streams together", "ms": spread(together)},
            {"name": f"torch {device} {streams} streams one by one", "ms": spread(alone)}]


@scenario("tracker", "face tracking ms per 1280x720 frame: mediapipe vs its networks in torch, 1/2/4 faces",
          default=False)
def tracker(quick: bool) -> dict[str, Any]:
    cases = []
    with tempfile.TemporaryDirectory() as tmp:
        for faces in (1, 2, 4):
            frames = _frames(make_clip(Path(tmp), 1280, 720, 16 if quick else 48, faces=faces).path)
            for name, make in _makers(faces).items():
                ms = repeat(lambda make=make, frames=frames: _ms_per_frame(make, frames), quick)
                cases.append({"name": f"{name} {faces} face{'s' if faces > 1 else ''}", "ms": spread(ms)})
            if faces == 1 and importlib.util.find_spec("torch") is not None:
                import torch

                for device in ["cpu", *(["cuda"] if torch.cuda.is_available() else [])]:
                    cases += _streams(device, frames, quick)
    return {"title": "face tracker, ms per 1280x720 frame (after the first)", "cases": cases,
            "notes": ["the torch tracker uses the plain 468-point mesh (irises placed from the eyes); "
                      "the mediapipe tracker runs the attention mesh (478 points)"]}
