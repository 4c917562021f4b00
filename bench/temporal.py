"""Temporal stability and what it costs: warping-error ratios with temporal blending off and on,
ms per 1280×720 frame for cut detection, optical flow, blending and people segmentation, and fps
with temporal blending on.

    python -m bench temporal [--quick]

Warping error (``henshin.engine.metrics``): each output frame t−1 warped to t by the *input's*
flow and compared over non-occluded pixels, inside each frame's face box at face scope and over the
whole frame at frame scope, on a clip with no lighting swing; the ratio output ÷ input is what the
table shows (1: as steady as the input). ``temporal`` is the filters' ``--param temporal=`` (0: off). The landmark filters (warp,
tint) follow the smoothed landmarks and have no temporal blending: they are measured off only.
fns runs the registry's candy weights when they are pulled, else a seeded random checkpoint of the
same network (same cost; its pictures mean nothing, so no warping error is given for it).
"""

from __future__ import annotations

import statistics
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from bench.clips import Clip, make_clip, video_frames, warping_of
from bench.common import timed_ms
from bench.harness import pair, peaks, repeat_each, scenario, spread
from henshin.engine.stats import STAGES

FRAMES = {"face": (24, 90), "frame": (5, 24)}  # (quick, full) frames per clip
ON = "0.8"  # the temporal weight the "on" runs use
TIMING_REPEATS = {True: 10, False: 50}


def _fns_weights(folder: Path) -> tuple[str, str]:
    """(--param weights= value, label): the pulled candy checkpoint, or seeded random weights saved here."""
    try:
        from henshin.models.store import model_path

        return str(model_path("fns-candy")), "fns"
    except Exception:  # noqa: BLE001 - not pulled (no download here): seeded weights, same cost
        import torch

        from henshin.nets.fns import transformer_net

        torch.manual_seed(0)
        path = folder / "fns-seeded.pth"
        torch.save(transformer_net().state_dict(), path)
        return str(path), "fns (seeded random weights)"


def _stability_case(clip: Clip, out: Path, runs: list[dict[str, Any]], label: str, scope: str,
                    temporal: str) -> dict[str, Any]:
    seeded = "seeded" in label  # random weights: the pictures, and so their stability, mean nothing
    return {
        "name": f"{label} {scope} temporal={temporal}",
        "filter": label, "scope": scope, "temporal": float(temporal), "clip": clip.describe(),
        "fps": spread([r["fps"] for r in runs]),
        "stage_ms": {k: round(statistics.median(r["stage_ms"][k] for r in runs), 2) for k in STAGES},
        "warping_error": None if seeded else warping_of(clip, out, whole_frame=scope == "frame"),
        **peaks(runs),
    }


def _stability(work: Path, quick: bool) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Each filter and scope with temporal off and on, round-robin; cases and the fps pairs."""
    from bench.convert import offline_run  # the engine (mediapipe): imported only where it runs
    weights, fns_label = _fns_weights(work)
    runs_of: list[tuple[str, str, str, str, dict[str, str]]] = []  # label, filter, scope, temporal, params
    for scope in ("face", "frame"):
        for name, label, extra in (("style", "style", {}), ("fns", fns_label, {"weights": weights})):
            for temporal in ("0", ON):
                runs_of.append((label, name, scope, temporal, {**extra, "scope": scope, "temporal": temporal}))
    for name, params in (("warp", {"preset": "big_eyes"}), ("tint", {"region": "lips"})):
        runs_of.append((name, name, "face", "0", params))
    # No lighting swing: the warping error then measures what the filter adds, not the light.
    clips = {scope: make_clip(work, 1280, 720, FRAMES[scope][not quick], light=0.0) for scope in FRAMES}
    outs = [work / f"out-{i}.mp4" for i in range(len(runs_of))]
    jobs = [offline_run(clips[scope], out, name, params)
            for (_, name, scope, _, params), out in zip(runs_of, outs, strict=True)]
    results = repeat_each(jobs, quick)
    cases = [_stability_case(clips[scope], out, runs, label, scope, temporal)
             for (label, _, scope, temporal, _), out, runs in zip(runs_of, outs, results, strict=True)]
    pairs = []
    for off, on in zip(cases, cases[1:], strict=False):
        if off["temporal"] == 0 and on["temporal"] > 0 and off["filter"] == on["filter"] \
                and off["scope"] == on["scope"]:
            ratios = {f"warping_ratio_{k}": (c["warping_error"] or {}).get("ratio") for k, c in (("off", off), ("on", on))}
            pairs.append(pair(f"{off['filter']} {off['scope']} 720p: temporal={ON} vs off", "fps",
                              ("temporal off", off["fps"]["median"]), (f"temporal={ON}", on["fps"]["median"]),
                              **ratios))
    return cases, pairs


def _ms(fn: Callable[[], Any], quick: bool) -> dict[str, Any]:
    """Median ms of ``fn`` after a warm-up, with its spread (CUDA synchronised when torch runs on it)."""
    return spread(timed_ms(fn, TIMING_REPEATS[quick], _cuda_sync(), warmup=3), 3)


def _cuda_sync() -> Callable[[], None]:
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        return torch.cuda.synchronize
    return lambda: None


def _costs(clip: Clip, quick: bool) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
    """ms per 1280×720 frame: cut detection, flow (crop and frame), blending (crop and frame), people."""
    from henshin.engine.shots import CutDetector
    from henshin.engine.temporal import FLOW_SIDE, FLOW_WIDTH, Previous, blend_with_previous
    from henshin.kernels.optflow import optical_flow, to_grey
    from henshin.types import FilterSpec

    frames = list(video_frames(clip.path))[:2]
    a, b = frames
    crop_a, crop_b = (np.ascontiguousarray(f[100:356, 512:768]) for f in (a, b))  # a 256² crop at the face
    detector = CutDetector()
    cases: list[dict[str, Any]] = []
    skipped: list[dict[str, str]] = []

    def case(name: str, fn: Callable[[], Any], note: str) -> None:
        cases.append({"name": name, "ms": _ms(fn, quick), "note": note})

    case("cut detection 1280x720", lambda: detector(a), "thumbnail, brightness-normalised histograms, distance")
    fh = round(720 * FLOW_WIDTH / 1280)
    ga, gb = to_grey(a, (FLOW_WIDTH, fh)), to_grey(b, (FLOW_WIDTH, fh))
    ca, cb = to_grey(crop_a, (FLOW_SIDE, FLOW_SIDE)), to_grey(crop_b, (FLOW_SIDE, FLOW_SIDE))
    case(f"flow cpu: frame {FLOW_WIDTH}x{fh}, both ways", lambda: (optical_flow(ga, gb), optical_flow(gb, ga)),
         "DIS fast, forward and backward (the occlusion check needs both)")
    case(f"flow cpu: face crop {FLOW_SIDE}x{FLOW_SIDE}, both ways",
         lambda: (optical_flow(ca, cb), optical_flow(cb, ca)), "DIS fast, per face")
    frame_spec = FilterSpec(consumes="frame", value_range=(0.0, 1.0), layout="NCHW")
    crop_spec = FilterSpec(consumes="crops", size=256, value_range=(0.0, 1.0), layout="NCHW")

    def item(image: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(image.transpose(2, 0, 1), np.float32) / 255.0

    fa, fb = item(a), item(b)
    m = np.array([[1.0, 0.0, -512.0], [0.0, 1.0, -100.0]])
    case("blend cpu: 1280x720 frame (flow, checks, warp, mix)",
         lambda: blend_with_previous(frame_spec, fb, fb, Previous(fa, fa, None), None, 0.8),
         "everything temporal blending adds per frame at frame scope")
    case("blend cpu: one 256 face crop (flow, checks, warp, mix)",
         lambda: blend_with_previous(crop_spec, item(crop_b), item(crop_b), Previous(item(crop_a), item(crop_a), m),
                                     m, 0.8), "per face at face scope")
    try:
        from henshin.engine.people import PeopleMasker
    except ImportError as exc:  # mediapipe missing (a GPU box with torch only): the rest still measured
        skipped.append({"case": "people segmentation", "reason": str(exc)})
    else:
        masker = PeopleMasker()
        try:
            case("people segmentation 1280x720", lambda: masker(a), "scope=background: selfie segmentation at "
                 "320 wide, smoothing, feathering, scaled to the frame")
        finally:
            masker.close()
    try:
        import torch
    except ImportError:
        torch = None
    if torch is None or not torch.cuda.is_available():
        skipped.append({"case": "flow and blend on the GPU (torch)", "reason": "no CUDA device here"})
        return cases, skipped
    dev = "cuda"
    tga, tgb = torch.from_numpy(ga).to(dev), torch.from_numpy(gb).to(dev)
    tfa, tfb = torch.from_numpy(fa).to(dev), torch.from_numpy(fb).to(dev)
    case(f"flow gpu: frame {FLOW_WIDTH}x{fh}, both ways", lambda: (optical_flow(tga, tgb), optical_flow(tgb, tga)),
         "torch coarse-to-fine Lucas–Kanade")
    case("blend gpu: 1280x720 frame (flow, checks, warp, mix)",
         lambda: blend_with_previous(frame_spec, tfb, tfb, Previous(tfa, tfa, None), None, 0.8),
         "torch path, the frame on the device")
    return cases, skipped


@scenario("temporal", "warping-error ratio per filter, temporal off/on; ms per 720p frame for cuts, flow, "
          "blending; fps with temporal on")
def temporal(quick: bool) -> dict[str, Any]:
    """Temporal stability figures in the suite's format."""
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        cases, pairs = _stability(work, quick)
        costs, skipped = _costs(make_clip(work, 1280, 720, 2, audio=False), quick)
    notes = [f"warping error: output frame t-1 warped to t by the input's flow (DIS medium), mean |difference| over "
             f"non-occluded pixels, 8-bit levels; inside each frame's face box at face scope, whole frame at frame "
             f"scope; clip without lighting swing; the table shows output / input (×ratio); 'on' is temporal={ON}",
             "warp and tint have no temporal blending (they follow the smoothed landmarks): off only",
             "pairs: fps with temporal on against off (ratio < 1: slower), with both warping ratios"]
    return {"title": "temporal stability: warping error off/on, cost per 1280x720 frame", "cases": cases + costs,
            "pairs": pairs, "notes": notes, "skipped": skipped}

