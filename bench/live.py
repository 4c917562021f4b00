"""Live speed: a 1280×720 30 fps file source played in real time, default filter, null sink.

    python -m bench.live [--frames 300] [--out bench/results/live.json]

Prints processed fps, dropped frames and capture→sink latency p50/p95/p99.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from bench.common import report
from henshin.engine.camera import RealtimeFileSource
from henshin.engine.convert import split_params
from henshin.engine.live import LiveConfig, LiveRunner
from henshin.engine.live_sinks import NullLiveSink
from henshin.engine.process import FrameProcessor
from henshin.engine.samples import SampleSpec, write_sample
from henshin.filters.base import create_filter


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=720)
    parser.add_argument("--filter", default="style")
    parser.add_argument("--param", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--out", type=Path, default=Path("bench/results/live.json"))
    args = parser.parse_args()
    raw = dict(p.split("=", 1) for p in args.param)
    filter_params, composite = split_params(args.filter, raw)

    with tempfile.TemporaryDirectory() as tmp:
        clip = Path(tmp) / "cam.mp4"
        # A short clip looped: the same motion as a long one without the generation time.
        write_sample(clip, SampleSpec(width=args.width, height=args.height, frames=90, fps=30, audio=False))
        source = RealtimeFileSource(clip, loop=True)
        filt = create_filter(args.filter, filter_params)
        processor = FrameProcessor(filt, composite)
        stats = LiveRunner(source, processor, [NullLiveSink()], LiveConfig(max_frames=args.frames)).run()
        filt.close()
    doc = stats.to_json(processor.stage_s)
    result = {"source": {"width": args.width, "height": args.height, "fps": 30, "frames": args.frames},
              "filter": args.filter, "params": raw, **doc}
    lat = doc["latency_ms"]
    rows = [("processed fps", f"{doc['fps_processed']}"), ("output fps", f"{doc['fps_out']}"),
            ("captured / processed / dropped",
             f"{doc['frames_captured']} / {doc['frames_processed']} / {doc['frames_dropped']}"),
            ("latency p50 / p95 / p99 ms", f"{lat['p50']} / {lat['p95']} / {lat['p99']}")]
    rows += [(f"{k} ms/frame", f"{v}") for k, v in doc["stage_ms"].items()]
    report("live 1280x720@30 → null, default filter", result, rows, args.out)


if __name__ == "__main__":
    main()
