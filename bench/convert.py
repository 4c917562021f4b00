"""Offline scenarios: ``henshin convert`` on generated clips, for each filter and scope.

    python -m bench offline-720p [--quick] [--out DIR]

``offline-720p`` and ``offline-1080p`` convert a clip with every filter that
needs no downloaded weights, at face scope and, where the filter has one, at
frame scope, and sweep the pipeline's batch size (frames whose faces go through
the filter together) with the default filter. ``faces-1-2-4`` tiles the face 1,
2 and 4 times. fps is frames over the pipeline's wall time (filter set-up
excluded); stage ms are per frame, and since the stages overlap in threads the
wall time per frame is near the slowest stage, not their sum.
"""

from __future__ import annotations

import statistics
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.clips import Clip, make_clip, warping_of
from bench.harness import measured, peaks, repeat, repeat_each, scenario, spread
from henshin.engine.chains import build_filter
from henshin.engine.convert import DEFAULT_FILTER, ConvertJob, convert
from henshin.engine.offline import OfflineConfig
from henshin.engine.stats import STAGES
from henshin.filters.base import available_filters, param_names, parse_params

# Frames per clip, (quick, full): a frame-scope network at 1080p takes seconds per frame on a CPU.
FRAMES = {("face", 720): (24, 90), ("frame", 720): (3, 12),
          ("face", 1080): (16, 60), ("frame", 1080): (3, 6)}
BATCHES = {True: (1, 4, 8), False: (1, 2, 4, 8)}  # frames per filter batch; 4 is the default


def runnable_filters() -> tuple[list[tuple[str, bool]], list[dict[str, str]]]:
    """(name, has a frame scope) for every filter that builds here, and the skipped ones with why."""
    runnable, skipped = [], []
    filters = available_filters()
    for name in sorted(filters, key=lambda n: (n != DEFAULT_FILTER, n)):
        cls = filters[name]
        try:
            build_filter(name, parse_params(cls.Params, {}), None, None).close()
        except Exception as exc:  # noqa: BLE001 - ModelError (no weights) above all; any other is reported too
            skipped.append({"case": f"filter {name}", "reason": str(exc).splitlines()[0]})
            continue
        runnable.append((name, "scope" in param_names(cls.Params)))
    return runnable, skipped


def offline_run(clip: Clip, out: Path, name: str = DEFAULT_FILTER, params: dict[str, str] | None = None,
                batch_frames: int = 4) -> Callable[[], dict[str, Any]]:
    """One ``henshin convert`` of ``clip`` into ``out``: its stats, wall time and memory peak."""
    params = dict(params or {})

    def once() -> dict[str, Any]:
        job = ConvertJob(clip.path, out, filter=name, params=params, overwrite=True,
                         scheduling=OfflineConfig(progress=False, batch_frames=batch_frames))
        return convert(job).to_json()

    return measured(once)


def offline_summary(clip: Clip, out: Path, runs: list[dict[str, Any]], name: str = DEFAULT_FILTER,
                    params: dict[str, str] | None = None, batch_frames: int = 4) -> dict[str, Any]:
    """A case from the runs of one conversion: fps spread, median stage ms, memory, warping error."""
    params = dict(params or {})
    last = runs[-1]
    scope = params.get("scope", "face")
    return {
        "name": f"{name} {scope} {clip.label} b{batch_frames}",
        "filter": name, "params": params, "scope": scope, "batch_frames": batch_frames,
        "clip": clip.describe(),
        "fps": spread([r["fps"] for r in runs]),
        "stage_ms": {k: round(statistics.median(r["stage_ms"][k] for r in runs), 2) for k in STAGES},
        "frames": last["frames_out"],
        "faces_per_frame": round(last["faces"] / max(last["frames_out"], 1), 2),
        "warping_error": warping_of(clip, out),
        **peaks(runs),
        "runs": runs,
    }


def offline_case(clip: Clip, work: Path, quick: bool, name: str = DEFAULT_FILTER,
                 params: dict[str, str] | None = None, batch_frames: int = 4) -> dict[str, Any]:
    """Convert ``clip`` with one filter (warm-up, repeats) and summarise it as a case."""
    out = work / "out.mp4"
    runs = repeat(offline_run(clip, out, name, params, batch_frames), quick)
    return offline_summary(clip, out, runs, name, params, batch_frames)


def batch_sweep(clip: Clip, work: Path, quick: bool, name: str) -> list[dict[str, Any]]:
    """The same conversion at each batch size, run round-robin so machine drift hits all alike."""
    batches = BATCHES[quick]
    outs = [work / f"out-b{b}.mp4" for b in batches]
    runs = repeat_each([offline_run(clip, out, name, batch_frames=b) for b, out in zip(batches, outs, strict=True)],
                       quick)
    cases = [offline_summary(clip, out, r, name, batch_frames=b) for b, out, r in zip(batches, outs, runs, strict=True)]
    for case in cases:
        case["name"] += " sweep"
    return cases


def offline(height: int, quick: bool, sweep: bool) -> dict[str, Any]:
    """Every runnable filter at face and frame scope on a 16:9 clip ``height`` pixels high."""
    width = height * 16 // 9
    runnable, skipped = runnable_filters()
    cases = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        face_clip = make_clip(work, width, height, FRAMES["face", height][not quick])
        frame_clip = make_clip(work, width, height, FRAMES["frame", height][not quick])
        for name, has_frame_scope in runnable:
            cases.append(offline_case(face_clip, work, quick, name))
            if has_frame_scope:
                cases.append(offline_case(frame_clip, work, quick, name, {"scope": "frame"}))
        if sweep and runnable:
            cases += batch_sweep(face_clip, work, quick, runnable[0][0])
    notes = [f"filters run: {', '.join(n for n, _ in runnable)}; frame scope where the filter has a scope parameter",
             "fps: frames / pipeline wall time (filter set-up excluded); stages overlap in threads"]
    return {"title": f"offline {width}x{height}: each filter, face and frame scope", "cases": cases,
            "skipped": skipped, "notes": notes}


@scenario("offline-720p", "offline 1280x720, each filter at face and frame scope, batch-size sweep")
def offline_720p(quick: bool) -> dict[str, Any]:
    """``henshin convert`` of a 1280×720 clip."""
    return offline(720, quick, sweep=True)


@scenario("offline-1080p", "offline 1920x1080, each filter at face and frame scope")
def offline_1080p(quick: bool) -> dict[str, Any]:
    """``henshin convert`` of a 1920×1080 clip."""
    return offline(1080, quick, sweep=False)


@scenario("faces-1-2-4", "offline 1280x720 with the face tiled 1, 2 and 4 times, default filter")
def faces_1_2_4(quick: bool) -> dict[str, Any]:
    """How the default filter's speed scales with the number of faces in the frame."""
    frames = 16 if quick else 60
    with tempfile.TemporaryDirectory() as tmp:
        cases = [offline_case(make_clip(Path(tmp), 1280, 720, frames, faces=n), Path(tmp), quick)
                 for n in (1, 2, 4)]
    notes = ["faces_per_frame: faces the tracker found per frame (the clip has 1, 2 or 4)"]
    return {"title": "offline 1280x720, 1 / 2 / 4 faces", "cases": cases, "notes": notes}


@scenario("smoke", "a tiny 320x240 clip through the default filter: the suite's own check", default=False)
def smoke(quick: bool) -> dict[str, Any]:
    """Eight small frames, one run: checks that the runner and writers work, not speed."""
    with tempfile.TemporaryDirectory() as tmp:
        case = offline_case(make_clip(Path(tmp), 320, 240, 8), Path(tmp), quick=True)
    return {"title": "smoke: 320x240, 8 frames", "cases": [case]}

