"""The frame loop's own cost on each device, with tracking replaced by the sample's known motion.

    python -m bench.stages [--quick] [--out bench/results/stages.json]

The sample clip's frames are rendered in memory and every face's landmarks come
from the known motion (the astronaut photo's landmarks, found once by the face
mesh and stored in ``bench/data``, moved by each frame's affine), so neither
mediapipe nor a codec is needed: what is timed is align (crop), filter,
composite, per 1280×720 frame, and frames per second through those stages.
Cases: the default filter at face scope with 1 and 4 faces and at frame scope —
on the CPU (ONNX Runtime, NumPy path) and, with CUDA, under torch fp32/fp16
with tensors on the GPU from crop to paste-back, plus torch.compile and CUDA
graphs. On CUDA each stage ends with a synchronisation, so its time is its own.
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import FramesSource, report, result_rows
from henshin.engine import stages as stages_module
from henshin.engine.chains import ChainRequest, FilterGraph
from henshin.engine.offline import run_sequential
from henshin.engine.sinks import NullSink
from henshin.engine.smoothing import CentredSmoother
from henshin.engine.tracking import TrackUpdate
from henshin.runtimes import RuntimeOptions, cuda_available
from henshin.samples import SampleSpec, motion, render_frames
from henshin.types import Face

LANDMARKS = Path(__file__).parent / "data" / "astronaut_landmarks.npy"


class KnownFaces:
    """Stands in for the tracker: each face's landmarks from the clip's known affine, in frame order."""

    def __init__(self, affines: np.ndarray) -> None:
        self.affines, self.points, self.index = affines, np.load(LANDMARKS), 0

    def track(self, image: np.ndarray) -> TrackUpdate:
        faces = []
        for face, affine in enumerate(self.affines[self.index]):
            xy = self.points[:, :2] @ affine[:, :2].T + affine[:, 2]
            z = self.points[:, 2:] * np.sqrt(abs(np.linalg.det(affine[:, :2])))
            faces.append(Face(face, np.concatenate([xy, z], 1).astype(np.float32)))
        started = [f.track_id for f in faces] if self.index == 0 else []
        self.index += 1
        return TrackUpdate(faces, started, [])

    def end_all(self) -> list[int]:
        return []

    def close(self) -> None:
        pass


def configurations(gpu_only: bool = False, compile: bool = True) -> list[tuple[str, RuntimeOptions | None]]:
    """(label, runtime options) for each device path this machine has."""
    out: list[tuple[str, RuntimeOptions | None]] = []
    if not gpu_only:
        out.append(("cpu onnxruntime", RuntimeOptions("onnxruntime", "cpu")))
    if cuda_available():
        out += [("cuda torch fp32", RuntimeOptions("torch", "cuda", "fp32")),
                ("cuda torch fp16", RuntimeOptions("torch", "cuda", "fp16")),
                ("cuda torch fp16 cuda-graphs", RuntimeOptions("torch", "cuda", "fp16", cuda_graphs=True))]
        if compile:
            out.append(("cuda torch fp16 compile", RuntimeOptions("torch", "cuda", "fp16", compile=True)))
    return out


def run_case(label: str, options: RuntimeOptions, faces: int, scope: str, frames: int,
             repeats: int) -> dict[str, Any]:
    """Frames through the stages (a warm-up pass, then ``repeats`` timed passes)."""
    spec = SampleSpec(width=1280, height=720, frames=frames, faces=faces, face_height=0.8 if faces == 1 else 0.9)
    affines, _ = motion(spec)
    images = render_frames(spec)
    graph = FilterGraph(ChainRequest("style", params={"scope": scope}), options)
    sync = _sync(options)
    runs = []
    try:
        for _ in range(repeats + 1):
            stages_module.FaceTracker = lambda config, affines=affines: KnownFaces(affines)  # noqa: ARG005
            stages = stages_module.FaceStages(graph, CentredSmoother(4), frame_rate=30.0)
            _synchronised(stages, sync)
            stats = run_sequential(FramesSource(images, fps=30), stages, NullSink())
            stages.close()
            busy = sum(stats.stage_s[k] for k in ("track", "align", "filter", "composite"))
            runs.append({"fps": stats.frames_out / busy,
                         **{f"{k}_ms": stats.stage_s[k] / stats.frames_out * 1000 for k in ("align", "filter", "composite")}})
    finally:
        graph.close()
    runs = runs[1:]  # the first pass warms up (exports, compiles, captures graphs)
    med = {k: round(statistics.median(r[k] for r in runs), 2) for k in runs[0]}
    return {"name": f"{label} {scope} {faces} face{'s' if faces > 1 else ''}", "device": label, "scope": scope,
            "faces": faces, **med, "fps_min": round(min(r["fps"] for r in runs), 2),
            "fps_max": round(max(r["fps"] for r in runs), 2)}


def _sync(options: RuntimeOptions) -> Any:
    if (options.device or "").startswith("cuda"):
        import torch

        return torch.cuda.synchronize
    return lambda: None


def _synchronised(stages: Any, sync: Any) -> None:
    """Each stage waits for its GPU work, so its time is its own."""
    for name in ("align", "filter", "composite"):
        real = getattr(stages, name)

        if name == "align":
            def wrapped(work: Any, real: Any = real) -> Any:
                out = list(real(work))
                sync()
                return iter(out)
        else:
            def wrapped(*args: Any, real: Any = real) -> Any:
                out = real(*args)
                sync()
                return out
        setattr(stages, name, wrapped)


def measure(quick: bool = False, gpu_only: bool = False, compile: bool = True) -> dict[str, Any]:
    frames, repeats = (8, 1) if quick else (30, 3)
    cases = []
    for label, options in configurations(gpu_only, compile):
        for faces, scope in ((1, "face"), (4, "face"), (1, "frame")):
            if scope == "frame" and options.runtime == "onnxruntime" and not quick:
                n = 4  # a 1280×720 frame through the network takes about half a second on 2 CPU cores
            else:
                n = frames
            try:
                cases.append(run_case(label, options, faces, scope, n, repeats))
            except Exception as exc:  # noqa: BLE001 - reported, the bench goes on
                cases.append({"name": f"{label} {scope} {faces}", "error": str(exc).splitlines()[0]})
    return {"cases": cases, "frames": frames, "repeats": repeats,
            "notes": ["tracking replaced by the known motion; no decode or encode; fps = frames / time in "
                      "align + filter + composite"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="8 frames, one timed pass")
    parser.add_argument("--gpu-only", action="store_true", help="only the CUDA paths")
    parser.add_argument("--no-compile", action="store_true", help="leave out torch.compile (its autotuning takes minutes)")
    parser.add_argument("--out", type=Path, default=Path("bench/results/stages.json"))
    args = parser.parse_args()
    result = measure(args.quick, args.gpu_only, not args.no_compile)
    rows = result_rows(result["cases"], lambda c: c["name"],
                       lambda c: f"{c['fps']:7.1f} fps ({c['fps_min']}–{c['fps_max']})  align {c['align_ms']:6.2f} ms  "
                                 f"filter {c['filter_ms']:7.2f} ms  composite {c['composite_ms']:6.2f} ms")
    report("stages per 1280×720 frame (tracking from the known motion)", result, rows, args.out)


if __name__ == "__main__":
    main()
