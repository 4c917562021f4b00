"""``ray``: ``henshin convert --ray`` on a local Ray with 1 and 2 workers against a plain ``convert``.

    python -m bench ray [--quick]

The same generated 1280×720 clip is converted by the plain local pipeline and by
the distributed path on a local Ray (started once, kept across runs, as a
cluster would be) with 1 and 2 CPU workers, and, where CUDA is present, with
one GPU worker against a plain convert on that GPU. Runs alternate after a
warm-up each. A Ray case's fps is frames over its run less the pool's start
(the actors importing henshin and building the filter, a fixed cost that a long
video pays once); that start, the planning (hashing and demuxing the input)
and the join (stream copy with the audio) are given in seconds beside it.
"""

from __future__ import annotations

import importlib
import os
import statistics
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.clips import make_clip
from bench.harness import measured, pair, peaks, repeat_each, scenario, spread
from henshin.engine.convert import ConvertJob, convert
from henshin.engine.offline import OfflineConfig

FRAMES = {True: 48, False: 240}  # 30 fps: 1.6 s (quick) or 8 s of video
SEGMENT_S = {True: 0.4, False: 2.0}  # 4 segments either way


def ray_run(clip_path: Path, out: Path, work: Path, workers: int, seconds: float, gpu: bool = False,
            runtime: Any = None) -> Callable[[], dict[str, Any]]:
    """One distributed conversion on the running local Ray: its stats, wall time and memory."""
    from henshin.engine.distributed.run import DistributedJob, run_distributed
    from henshin.engine.distributed.scheduler import RayPool

    settings = ConvertJob(Path(), Path(), runtime=runtime, scheduling=OfflineConfig(progress=False))

    def once() -> dict[str, Any]:
        job = DistributedJob([(clip_path, out)], settings, segment_seconds=seconds, overwrite=True,
                             work_root=work, progress=False)
        stats = run_distributed(job, lambda: RayPool(settings, workers=workers, gpus=gpu)).to_json()
        busy = stats["wall_s"] - stats["startup_s"]
        return {**stats, "fps": stats["frames_out"] / busy, "fps_with_startup": stats["fps"]}

    return measured(once)


def ray_case(name: str, runs: list[dict[str, Any]]) -> dict[str, Any]:
    """A case from the runs of one distributed conversion."""
    last = runs[-1]

    def median(key: str) -> float:
        return round(statistics.median(r[key] for r in runs), 3)

    processed = sum(r["processed"] for r in last["segments"])
    return {"name": name, "fps": spread([r["fps"] for r in runs]),
            "fps_with_startup": spread([r["fps_with_startup"] for r in runs]),
            "planning_s": median("planning_s"), "startup_s": median("startup_s"), "join_s": median("join_s"),
            "frames": last["frames_out"], "segments": last["segments_total"],
            "processed_per_frame": round(processed / max(last["frames_out"], 1), 3),
            "workers": last["workers"], "stage_ms": last["stage_ms"], **peaks(runs)}


def local_case(name: str, runs: list[dict[str, Any]]) -> dict[str, Any]:
    """A case from the runs of a plain local convert."""
    return {"name": name, "fps": spread([r["fps"] for r in runs]), "frames": runs[-1]["frames_out"],
            "stage_ms": runs[-1]["stage_ms"], **peaks(runs)}


@scenario("ray", "offline 1280x720 with --ray on a local Ray: 1 and 2 workers (and 1 GPU worker) against convert")
def ray_scenario(quick: bool) -> dict[str, Any]:
    """Throughput of the distributed path against the local one, and its fixed costs."""
    try:
        ray = importlib.import_module("ray")
    except ImportError:
        return {"skipped": [{"case": "ray", "reason": "Ray is not installed (pip install 'henshin[ray]')"}]}
    cuda = _cuda()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        clip = make_clip(work, 1280, 720, FRAMES[quick])
        seconds = SEGMENT_S[quick]
        ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
        try:
            cpu_runtime = None
            if cuda:
                from henshin.runtimes import RuntimeOptions

                cpu_runtime = RuntimeOptions(device="cpu")
            names = ["convert", "ray 1 worker", "ray 2 workers"]
            fns = [local_run(clip.path, work / "local.mp4", cpu_runtime),
                   ray_run(clip.path, work / "ray1.mp4", work / "segments", 1, seconds, runtime=cpu_runtime),
                   ray_run(clip.path, work / "ray2.mp4", work / "segments", 2, seconds, runtime=cpu_runtime)]
            if cuda:
                names += ["convert gpu", "ray 1 gpu worker"]
                fns += [local_run(clip.path, work / "local-gpu.mp4"),
                        ray_run(clip.path, work / "ray-gpu.mp4", work / "segments", 1, seconds, gpu=True)]
            runs = repeat_each(fns, quick)
        finally:
            ray.shutdown()
    label = f"1280x720 {FRAMES[quick]} frames"
    cases = [(local_case if n.startswith("convert") else ray_case)(f"{n} {label}", r) for n, r in zip(names, runs, strict=True)]
    fps = {n: c["fps"]["median"] for n, c in zip(names, cases, strict=True)}
    pairs = [pair(f"{n} vs convert", "fps", ("convert", fps["convert"]), (n, fps[n]))
             for n in ("ray 1 worker", "ray 2 workers")]
    if cuda:
        pairs.append(pair("ray 1 gpu worker vs convert gpu", "fps", ("convert gpu", fps["convert gpu"]),
                          ("ray 1 gpu worker", fps["ray 1 gpu worker"])))
    notes = [f"segments of {seconds} s ({cases[1]['segments']} of them), each with warm-up and look-ahead "
             "frames through the stages (processed_per_frame)",
             "ray fps: frames / (run - pool start); fps_with_startup includes the actors' start (startup_s)",
             f"{os.cpu_count()} CPUs on one machine: the workers share them with each other and with the driver"]
    skipped = [] if cuda else [{"case": "ray 1 gpu worker", "reason": "no CUDA device"}]
    return {"title": "offline 1280x720: --ray on a local Ray against a plain convert", "cases": cases,
            "pairs": pairs, "notes": notes, "skipped": skipped}


def local_run(clip_path: Path, out: Path, runtime: Any = None) -> Callable[[], dict[str, Any]]:
    """One plain ``henshin convert`` of the clip: its stats, wall time and memory."""

    def once() -> dict[str, Any]:
        job = ConvertJob(clip_path, out, overwrite=True, runtime=runtime, scheduling=OfflineConfig(progress=False))
        return convert(job).to_json()

    return measured(once)


def _cuda() -> bool:
    from henshin.runtimes import cuda_available

    return cuda_available()
