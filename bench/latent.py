"""The latent filter: ms per face for its parts, end-to-end fps, and what W+ smoothing buys.

    python -m bench latent [--quick]

- Per face, per runtime this machine has (``bench.runtimes.configurations``): the e4e encoder
  (IR-SE50, 18 style blocks, 256 input), the generator at 256 (rosinality ``Generator(256)``),
  at 1024 (FFHQ config-f) and the 1024 generator stopped at 256 (``size=256``, what the
  governor falls back to), and the paste-back of one face into a 1280×720 frame (a 256 crop and
  a 1024 output; NumPy, and torch on CUDA where present). Seeded random weights in the
  released configurations: what a network costs does not depend on its weights' values.
- End to end: ``henshin convert`` of a 1280×720 clip with 1 and 2 faces, ``random_weights=1``
  (e4e + 256 generator), ``edit=smile:2`` in the default delta mode, ``encode_every`` 1 and 4.
- Domains (issue 19): ms per face of a face decoded by an adapted generator against the FFHQ one
  (same architecture, so the same cost), the memory a second loaded generator adds, and switching
  live: ``set domain N`` to a preloaded domain (``domains=``) and to one read on demand, with the
  first frame after the switch against a steady frame (the stall).
- Stability: the same clip (one face, no lighting swing) with W+ smoothing on (``smooth=1``)
  and off (``smooth=0``): the warping error ratio (output ÷ input inside the face box) and the
  mean frame-to-frame W+ change (RMS over coordinates). With random weights the pictures mean
  nothing; the ratios still show how much frame-to-frame change the filter adds.
"""

from __future__ import annotations

import dataclasses
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from bench.clips import Clip, make_clip, warping_of
from bench.common import sample_face, timed_ms
from bench.harness import pair, peaks, repeat_each, scenario, spread
from henshin.engine.stats import STAGES

FRAMES = {True: 8, False: 48}  # frames per end-to-end clip (quick, full)
REPEATS = {True: 2, False: 5}  # timed calls per per-face figure
EDIT = {"random_weights": "1", "edit": "smile:2"}


def _ms(fn: Callable[[], Any], quick: bool, sync: Callable[[], None]) -> dict[str, Any]:
    return spread(timed_ms(fn, REPEATS[quick], sync, warmup=1), 2)


def _sync() -> Callable[[], None]:
    import torch

    return torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)


def _networks() -> list[tuple[str, Callable[[], Any], tuple[int, ...]]]:
    """(name, module builder, per-sample input shape) of each network the filter runs."""
    import torch

    from henshin.filters.latent.networks import Synthesis
    from henshin.nets.e4e import E4EEncoder
    from henshin.nets.stylegan2 import StyleGAN2Generator, rosinality_channels

    def seeded(build: Callable[[], Any]) -> Callable[[], Any]:
        def make() -> Any:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(0)
                return build().eval().requires_grad_(False)
        return make

    def generator(size: int, stop: int | None = None) -> Callable[[], Any]:
        return seeded(lambda: Synthesis(StyleGAN2Generator(size, 512, 8, rosinality_channels(2)), stop or size))

    return [("e4e encoder (256 input, 18 rows)", seeded(lambda: E4EEncoder(18)), (3, 256, 256)),
            ("generator 256", generator(256), (14, 512)),
            ("generator 1024", generator(1024), (18, 512)),
            ("generator 1024 stopped at 256 (size=256)", generator(1024, 256), (18, 512))]


def _per_face(quick: bool) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
    """ms per face (batch 1) of each network under each runtime, and of the paste-back."""
    import torch

    from bench.runtimes import configurations
    from henshin import runtimes as rt

    cases, skipped, sync = [], [], _sync()
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as cache:
        for name, build, shape in _networks():
            module = build()
            x = rng.standard_normal((1, *shape)).astype(np.float32) * (1 if len(shape) == 3 else 0.5)
            for label, options in configurations():
                options = dataclasses.replace(options, max_batch=2, cache_dir=Path(cache))
                try:
                    key = "bench-" + "".join(ch if ch.isalnum() else "-" for ch in name.split(",")[0])
                    runtime = rt.build(options, key, [("x", shape)], module=module)  # one cache key per network
                    arg = torch.from_numpy(x).cuda() if options.device == "cuda" and options.runtime == "torch" else x
                    cases.append({"name": f"{name}, {label}", "ms": _ms(lambda r=runtime, a=arg: r(a), quick, sync)})
                except Exception as exc:  # noqa: BLE001 - a runtime this machine lacks is a skipped row
                    skipped.append({"case": f"{name}, {label}", "reason": str(exc).splitlines()[0]})
            del module
    cases += _paste_back(quick, sync)
    return cases, skipped


def _paste_back(quick: bool, sync: Callable[[], None]) -> list[dict[str, Any]]:
    """ms to blend one filtered face into a 1280×720 frame: a 256 crop, a 1024 output; NumPy and CUDA."""
    import torch

    from henshin.engine.align import crop_matrix
    from henshin.engine.composite import CompositeParams, Compositor
    from henshin.kernels.ffhq import ffhq_quad
    from henshin.types import AlignedFace, FilterSpec

    frame, face = sample_face(1280, 720)
    aligned = AlignedFace(face.track_id, face.landmarks, ffhq_quad(face.landmarks))
    cases = []
    devices = ["cpu", *(["cuda"] if torch.cuda.is_available() else [])]
    for device in devices:
        fspec = FilterSpec(size=256, array="torch" if device == "cuda" else "numpy", device=device)
        matrix = crop_matrix(aligned, fspec)
        for side in (256, 1024):
            out = np.random.default_rng(side).uniform(-1, 1, (3, side, side)).astype(np.float32)
            canvas = frame.copy()
            if device == "cuda":
                out, canvas = torch.from_numpy(out).cuda(), torch.from_numpy(canvas).cuda()
            compositor = Compositor()

            def paste(c: Compositor = compositor, canvas: Any = canvas, out: Any = out, matrix: Any = matrix,
                      fspec: FilterSpec = fspec) -> None:
                c.paste(canvas, aligned, out, matrix, fspec, CompositeParams())

            cases.append({"name": f"paste-back of a {side} output into 1280x720, {device}", "ms": _ms(paste, quick, sync)})
    return cases


def _end_to_end(work: Path, quick: bool) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """convert fps for 1 and 2 faces at 720p with encode_every 1 and 4 (random_weights, delta mode, smile:2)."""
    from bench.convert import offline_run

    runs_of = [(faces, every) for faces in (1, 2) for every in (1, 4)]
    clips = {faces: make_clip(work, 1280, 720, FRAMES[quick], faces=faces, light=0.0) for faces in (1, 2)}
    outs = [work / f"e2e-{faces}-{every}.mp4" for faces, every in runs_of]
    jobs = [offline_run(clips[faces], out, "latent", {**EDIT, "encode_every": str(every)})
            for (faces, every), out in zip(runs_of, outs, strict=True)]
    results = repeat_each(jobs, quick)
    cases = [{"name": f"latent 1280x720 {faces} face{'s' if faces > 1 else ''} encode_every={every}",
              "clip": clips[faces].describe(), "fps": spread([r["fps"] for r in runs]),
              "stage_ms": {k: round(statistics.median(r["stage_ms"][k] for r in runs), 2) for k in STAGES},
              **peaks(runs)}
             for (faces, every), runs in zip(runs_of, results, strict=True)]
    pairs = [pair(f"latent 720p {faces} face(s): encode_every=4 vs 1", "fps",
                  ("encode_every=1", cases[2 * i]["fps"]["median"]), ("encode_every=4", cases[2 * i + 1]["fps"]["median"]))
             for i, faces in enumerate((1, 2))]
    return cases, pairs


def _stability(work: Path, quick: bool) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Warping-error ratio and frame-to-frame W+ change with W+ smoothing on and off."""
    clip = make_clip(work, 1280, 720, FRAMES[quick], light=0.0)
    cases = []
    for smooth in ("1", "0"):
        out = work / f"smooth-{smooth}.mp4"
        change, fps = _run_recording(clip, out, {**EDIT, "smooth": smooth})
        cases.append({"name": f"latent 1280x720 smooth={smooth}", "fps": spread([fps]),
                      "warping_error": warping_of(clip, out), "w_plus_change_rms": round(change, 5)})
    on, off = cases
    # unit "ms" makes the ratio off ÷ on: how many times steadier smoothing makes the output
    pairs = [pair("latent 720p: W+ smoothing on vs off, warping-error ratio", "ms",
                  ("smooth=0", (off["warping_error"] or {}).get("ratio") or 0.0),
                  ("smooth=1", (on["warping_error"] or {}).get("ratio") or 0.0),
                  w_plus_change={"off": off["w_plus_change_rms"], "on": on["w_plus_change_rms"]})]
    return cases, pairs


def _run_recording(clip: Clip, out: Path, params: dict[str, str]) -> tuple[float, float]:
    """Convert ``clip`` as ``henshin convert`` does, recording each face's smoothed W+; (mean RMS change, fps)."""
    from henshin.engine.chains import ChainRequest, FilterGraph
    from henshin.engine.files import VideoFileSink
    from henshin.engine.offline import OfflineConfig, run_offline
    from henshin.engine.smoothing import CentredSmoother
    from henshin.engine.sources import open_source
    from henshin.engine.stages import FaceStages

    graph = FilterGraph(ChainRequest("latent", {}, params))
    filt = graph.default.links[0].filter
    codes: dict[int, list[Any]] = {}
    process = filt.process

    def recording(batch: Any, faces: Any) -> Any:
        result = process(batch, faces)
        for c in faces:  # batch_frames=1: one item per face per call, so last_bases is this item's
            codes.setdefault(c.track_id, []).append(filt.last_bases[c.track_id].detach().cpu().clone())
        return result

    filt.process = recording
    source = open_source(clip.path)
    stages = FaceStages(graph, CentredSmoother(4), frame_rate=float(source.frame_rate))
    try:
        sink = VideoFileSink(out, source.frame_rate, source.time_base, None, 18, "veryfast")
        start = time.perf_counter()
        stats = run_offline(source, stages, sink, OfflineConfig(progress=False, batch_frames=1))
        fps = stats.frames_out / (time.perf_counter() - start)
    finally:
        stages.close()
        graph.close()
        source.close()
    steps = [float((b - a).square().mean().sqrt()) for track in codes.values() for a, b in zip(track, track[1:], strict=False)]
    return (statistics.mean(steps) if steps else 0.0), fps


def _domains(work: Path, quick: bool) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Cost of decoding with a second generator and of switching domains live (random weights, runtime auto)."""
    import torch

    from henshin.filters.base import parse_params
    from henshin.filters.latent.filter import LatentFilter
    from henshin.filters.latent.params import LatentParams
    from henshin.nets.stylegan2 import StyleGAN2Generator, rosinality_channels
    from henshin.types import FaceContext

    paths = []
    for seed in (1, 2, 3):  # three "domains": the released 256 configuration with other seeds
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            g = StyleGAN2Generator(256, 512, 8, rosinality_channels(2))
        paths.append(work / f"domain-{seed}.pt")
        torch.save({"g_ema": g.state_dict()}, paths[-1])
    params = {**EDIT, "mode": "replace", "domains": f"{paths[0]},{paths[1]}"}
    start = time.perf_counter()
    filt = LatentFilter(parse_params(LatentParams, params))
    load_s = time.perf_counter() - start
    crop = np.random.default_rng(0).uniform(-1, 1, (1, 3, 256, 256)).astype(np.float32)
    state = filt.start_track(0)
    clock = {"i": 0}

    def frame() -> float:
        clock["i"] += 1
        begin = time.perf_counter()
        filt.process(crop, [FaceContext(0, state, clock["i"], clock["i"] / 30)])
        return (time.perf_counter() - begin) * 1000

    def steady(domain: str) -> dict[str, Any]:
        filt.set_params(domain=domain)
        frame()
        return spread([frame() for _ in range(REPEATS[quick])])

    base, domain = steady("0"), steady("1")
    filt.set_params(domain="0")
    frame()
    begin = time.perf_counter()
    filt.set_params(domain="2")
    switch_ms = (time.perf_counter() - begin) * 1000
    first_ms = frame()
    begin = time.perf_counter()
    filt.set_params(domain=str(paths[2]))
    cold_ms = (time.perf_counter() - begin) * 1000
    cold_first = frame()
    weights_mb = sum(t.numel() * t.element_size() for t in filt.decoder.generator.state_dict().values()) / 2**20
    filt.close()
    cases = [{"name": "latent face, FFHQ generator (replace)", "ms": base},
             {"name": "latent face, a domain's generator (replace)", "ms": domain},
             {"name": "switch to a preloaded domain (set domain 2)", "ms": spread([switch_ms], 3),
              "first_frame_ms": round(first_ms, 1)},
             {"name": "switch to a domain read on demand (set domain PATH)", "ms": spread([cold_ms], 1),
              "first_frame_ms": round(cold_first, 1)},
             {"name": "filter start with 2 preloaded domains", "ms": spread([load_s * 1000], 1),
              "generator_weights_mb": round(weights_mb, 1)}]
    pairs = [pair("latent face: domain generator vs FFHQ generator", "ms", ("FFHQ", base["median"]),
                  ("domain", domain["median"])),
             pair("first frame after a preloaded switch vs a steady frame", "ms", ("steady", domain["median"]),
                  ("first after switch", round(first_ms, 1)))]
    return cases, pairs


@scenario("latent", "latent filter: ms per face (encoder, generator 256/1024, paste-back) per runtime; 720p fps "
          "for 1-2 faces, encode_every 1/4; warping error with W+ smoothing on/off; domains: decode and switch cost")
def latent(quick: bool) -> dict[str, Any]:
    """The latent filter's figures in the suite's format."""
    per_face, skipped = _per_face(quick)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        e2e, e2e_pairs = _end_to_end(work, quick)
        stable, stable_pairs = _stability(work, quick)
        domains, domain_pairs = _domains(work, quick)
    notes = ["seeded random weights in the released configurations (what a network costs does not depend on its "
             "weights); per-face ms at batch 1, median of repeats after one warm-up",
             "end to end: random_weights=1 (e4e + 256 generator), edit=smile:2, mode=delta (two generator passes "
             "per face), runtime auto; encode_every=4 runs the encoder on one frame in four for a still face",
             "stability: warping error inside the face box, output / input; the W+ change is the mean RMS over "
             "coordinates between consecutive frames of a face; batch_frames=1 so each item is recorded in order"]
    notes.append("domains: random 256-px generators as domains, replace mode, one face crop through the filter; "
                 "a switch's ms is the set_params call, first_frame_ms the frame after it (a steady frame for "
                 "comparison is the domain row)")
    return {"title": "latent filter: cost per face, 720p fps, W+ smoothing, domains",
            "cases": per_face + e2e + stable + domains, "pairs": e2e_pairs + stable_pairs + domain_pairs,
            "notes": notes, "skipped": skipped}

