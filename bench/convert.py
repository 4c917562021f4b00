"""Offline conversion speed: a generated 1280×720 clip through the default filter.

    python -m bench.convert [--frames 120] [--repeats 3] [--out bench/results/convert.json]

Prints end-to-end fps and per-stage milliseconds per frame. The stages run in
overlapping threads, so the wall time per frame should be close to the slowest
stage's, not to the sum of all stages.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

from bench.common import report
from henshin.engine.convert import ConvertJob, convert
from henshin.engine.pipeline import PipelineConfig
from henshin.engine.samples import SampleSpec, write_sample


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=120)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=720)
    parser.add_argument("--param", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--out", type=Path, default=Path("bench/results/convert.json"))
    args = parser.parse_args()
    params = dict(p.split("=", 1) for p in args.param)

    with tempfile.TemporaryDirectory() as tmp:
        clip = Path(tmp) / "clip.mp4"
        spec = SampleSpec(width=args.width, height=args.height, frames=args.frames, fps=30)
        write_sample(clip, spec)
        runs = []
        for i in range(args.repeats + 1):  # the first run warms caches and is not counted
            job = ConvertJob(clip, Path(tmp) / "out.mp4", params=params, overwrite=True,
                             pipeline=PipelineConfig(progress=False))
            stats = convert(job).to_json()
            if i:
                runs.append(stats)
    fps = [r["fps"] for r in runs]
    stages = {k: statistics.median(r["stage_ms"][k] for r in runs) for k in runs[0]["stage_ms"]}
    wall_ms = 1000 / statistics.median(fps)
    result = {
        "clip": {"width": args.width, "height": args.height, "frames": args.frames, "fps": 30},
        "params": params,
        "fps_median": round(statistics.median(fps), 2),
        "fps_min": round(min(fps), 2),
        "fps_max": round(max(fps), 2),
        "frames_with_faces": runs[-1]["frames_with_faces"],
        "stage_ms_median": {k: round(v, 2) for k, v in stages.items()},
        "wall_ms_per_frame": round(wall_ms, 2),
        "sum_of_stages_ms": round(sum(stages.values()), 2),
        "slowest_stage_ms": round(max(stages.values()), 2),
        "runs": runs,
    }
    rows = [("fps (median, min–max)", f"{result['fps_median']} ({result['fps_min']}–{result['fps_max']})")]
    rows += [(f"{k} ms/frame", f"{v:.2f}") for k, v in stages.items()]
    rows += [("wall ms/frame", f"{wall_ms:.2f}"), ("sum of stages ms", f"{result['sum_of_stages_ms']}"),
             ("slowest stage ms", f"{result['slowest_stage_ms']}")]
    report("convert 1280x720, default filter", result, rows, args.out)


if __name__ == "__main__":
    main()
