"""The ``henshin`` command line."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

from henshin import __version__
from henshin.errors import HenshinError, OptionError

log = logging.getLogger("henshin")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="henshin", description="Real-time face video filters.")
    parser.add_argument("--version", action="version", version=f"henshin {__version__}")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar or notes")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("convert", help="filter a video, image or folder of images into a file")
    p.add_argument("input", type=Path, help="video file, image, or folder of images")
    p.add_argument("output", type=Path, help="output .mp4/.mov/.mkv, image, or folder")
    _add_filter_options(p)
    p.add_argument("--stats", type=Path, metavar="STATS.json", help="write run statistics as JSON")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    p.add_argument("--max-faces", type=int, default=4, metavar="N", help="faces to track (default 4)")
    p.add_argument("--smooth", type=int, default=4, metavar="FRAMES",
                   help="alignment smoothing half-window in frames; 0 turns it off (default 4)")
    p.add_argument("--batch", type=int, default=4, metavar="FRAMES",
                   help="frames whose faces are filtered together (default 4)")
    p.add_argument("--crf", type=int, default=18, help="H.264 quality, lower is better (default 18)")
    p.add_argument("--preset", default="veryfast", help="x264 speed preset (default veryfast)")
    p.set_defaults(run=_run_convert)

    p = sub.add_parser("live", help="camera (or a video file) → filter → virtual camera / preview")
    p.add_argument("--source", default="0", help="camera index, /dev/videoN, or a video file (default 0)")
    p.add_argument("--sink", action="append", choices=["vcam", "preview", "null"], default=None,
                   help="where frames go, repeatable (default vcam)")
    _add_filter_options(p)
    p.add_argument("--width", type=int, help="camera width to ask for")
    p.add_argument("--height", type=int, help="camera height to ask for")
    p.add_argument("--fps", type=float, help="camera frame rate to ask for")
    p.add_argument("--loop", action="store_true", help="loop a file source")
    p.add_argument("--max-frames", type=int, metavar="N", help="stop after N captured frames")
    p.add_argument("--max-faces", type=int, default=2, metavar="N", help="faces to track (default 2)")
    p.add_argument("--stats", type=Path, metavar="STATS.json", help="write run statistics as JSON")
    p.add_argument("--overlay", action="store_true", help="draw fps and latency on the output")
    p.add_argument("--vcam-device", help="virtual camera device, e.g. /dev/video10")
    p.add_argument("--vcam-backend", help=argparse.SUPPRESS)
    p.set_defaults(run=_run_live)

    p = sub.add_parser("sample", help="write a sample clip: a face with known motion and a tone")
    p.add_argument("output", type=Path, help="output .mp4")
    p.add_argument("--width", type=int, default=640)
    p.add_argument("--height", type=int, default=480)
    p.add_argument("--frames", type=int, default=72)
    p.add_argument("--fps", type=int, default=24)
    p.add_argument("--faces", type=int, default=1)
    p.set_defaults(run=_run_sample)

    p = sub.add_parser("filters", help="list filters and their parameters")
    p.set_defaults(run=_run_filters)

    p = sub.add_parser("doctor", help="what this machine can run: GPU, runtimes, virtual camera, models")
    p.set_defaults(run=_run_doctor)

    from henshin.cli.models import add_models_parser

    add_models_parser(sub)
    return parser


def _add_filter_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--filter", default="style", help="filter name (default: style); see `henshin filters`")
    p.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                   help="filter or compositing parameter, repeatable")
    p.add_argument("--runtime", default="auto", metavar="NAME",
                   help="auto, torch, onnxruntime or tensorrt (default auto: TensorRT with a GPU, "
                        "else torch on CUDA, else ONNX Runtime on the CPU)")
    p.add_argument("--precision", default=None, metavar="P",
                   help="fp32, fp16 or bf16 (default: fp16 on a GPU, fp32 on the CPU)")
    p.add_argument("--device", default=None, metavar="DEV", help="cpu, cuda or cuda:N (default: the runtime's best)")
    p.add_argument("--compile", action="store_true", help="torch runtime: compile the network with torch.compile")
    p.add_argument("--cuda-graphs", action="store_true",
                   help="torch runtime on a GPU: capture each input shape once as a CUDA graph and replay it")


def runtime_options(args: argparse.Namespace, max_batch: int = 8) -> object:
    """The RuntimeOptions the command line asks for (validated)."""
    from henshin.runtimes import RuntimeOptions

    return RuntimeOptions(runtime=args.runtime, precision=args.precision, device=args.device, max_batch=max_batch,
                          compile=args.compile, cuda_graphs=args.cuda_graphs)


def parse_param_pairs(pairs: list[str]) -> dict[str, str]:
    """``["style=3", "strength=0.5"]`` → dict, with a clear error for a malformed pair."""
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise OptionError(f"--param expects KEY=VALUE, got {pair!r}.")
        out[key.strip()] = value.strip()
    return out


def _run_convert(args: argparse.Namespace) -> int:
    from henshin.engine.convert import ConvertJob, convert
    from henshin.engine.pipeline import PipelineConfig
    from henshin.engine.tracking import TrackerConfig

    for name, value, low in (("--max-faces", args.max_faces, 1), ("--smooth", args.smooth, 0),
                             ("--batch", args.batch, 1)):
        if value < low:
            raise OptionError(f"{name} expects a whole number of at least {low}, got {value}.")
    if args.stats is not None and not args.stats.resolve().parent.is_dir():
        raise OptionError(f"the folder of --stats {args.stats} does not exist; create it or choose another path.")
    job = ConvertJob(
        input=args.input, output=args.output, filter=args.filter, params=parse_param_pairs(args.param),
        pipeline=PipelineConfig(tracker=TrackerConfig(max_faces=args.max_faces), smooth_radius=args.smooth,
                                batch_frames=args.batch, progress=not args.quiet and sys.stderr.isatty()),
        overwrite=args.overwrite, crf=args.crf, preset=args.preset,
        runtime=runtime_options(args, max_batch=max(8, args.batch * args.max_faces)),
    )
    stats = convert(job)
    doc = stats.to_json() | {"input": str(args.input), "output": str(args.output), "filter": args.filter,
                              "params": job.params}
    if args.stats is not None:
        args.stats.write_text(json.dumps(doc, indent=2) + "\n")
    if not args.quiet:
        log.info("wrote %s: %d frames, %d with faces, %.1f fps", args.output, stats.frames_out,
                 stats.frames_with_faces, doc["fps"])
    return 0


def _run_live(args: argparse.Namespace) -> int:
    from henshin.engine.camera import open_live_source
    from henshin.engine.convert import split_params
    from henshin.engine.live import LiveConfig, LiveRunner, read_commands
    from henshin.engine.live_sinks import NullLiveSink, PreviewSink, VirtualCameraSink
    from henshin.engine.process import FrameProcessor
    from henshin.engine.tracking import TrackerConfig
    from henshin.filters.base import create_filter

    if args.max_frames is not None and args.max_frames < 1:
        raise OptionError(f"--max-frames expects a whole number of at least 1, got {args.max_frames}.")
    if args.max_faces < 1:
        raise OptionError(f"--max-faces expects a whole number of at least 1, got {args.max_faces}.")
    filter_params, composite = split_params(args.filter, parse_param_pairs(args.param))
    runtime = runtime_options(args, max_batch=max(1, args.max_faces))
    source = open_live_source(args.source, args.width, args.height, args.fps, args.loop)
    sinks: list = []
    runner_box: list = []
    try:
        for kind in dict.fromkeys(args.sink or ["vcam"]):
            if kind == "vcam":
                sink = VirtualCameraSink(source.width, source.height, float(source.frame_rate),
                                         args.vcam_device, args.vcam_backend)
                log.info("virtual camera: %s", sink.device)
            elif kind == "preview":
                sink = PreviewSink(lambda line: runner_box[0].command(line))
            else:
                sink = NullLiveSink()
            sinks.append(sink)
        filt = create_filter(args.filter, filter_params, runtime)
    except BaseException:
        for sink in sinks:
            sink.close()
        source.close()
        raise
    log.info("%s", source.describe())
    processor = FrameProcessor(filt, composite, TrackerConfig(max_faces=args.max_faces))
    runner = LiveRunner(source, processor, sinks, LiveConfig(args.max_frames, args.overlay))
    runner_box.append(runner)
    if sys.stdin is not None and not sys.stdin.closed:
        read_commands(sys.stdin, runner)  # `set strength 0.5`, `filter style`, `toggle`, `quit`
    try:
        stats = runner.run()
    finally:
        filt.close()
    doc = stats.to_json(processor.stage_s) | {"source": str(args.source), "filter": args.filter}
    if args.stats is not None:
        args.stats.write_text(json.dumps(doc, indent=2) + "\n")
    log.info("%s: %d captured, %d processed, %d dropped; latency p50 %.1f ms, p99 %.1f ms",
             stats.end_reason, stats.frames_captured, stats.frames_processed, stats.frames_dropped,
             doc["latency_ms"]["p50"], doc["latency_ms"]["p99"])
    return 0


def _run_sample(args: argparse.Namespace) -> int:
    from henshin.samples import SampleSpec, write_sample

    if args.output.suffix.lower() != ".mp4":
        raise OptionError(f"sample output should end in .mp4, got {args.output}.")
    spec = SampleSpec(width=args.width, height=args.height, frames=args.frames, fps=args.fps, faces=args.faces)
    tmp = args.output.with_name(f".{args.output.name}.partial.mp4")
    write_sample(tmp, spec)
    os.replace(tmp, args.output)
    log.info("wrote %s (%dx%d, %d frames at %d fps, with audio)", args.output, spec.width, spec.height,
             spec.frames, spec.fps)
    return 0


def _run_filters(args: argparse.Namespace) -> int:
    import dataclasses

    from henshin.engine.composite import CompositeParams
    from henshin.filters.base import available_filters

    for name, cls in sorted(available_filters().items()):
        print(f"{name}: {(cls.__doc__ or '').strip().splitlines()[0]}")
        for f in dataclasses.fields(cls.Params):
            print(f"  {f.name} = {f.default!r}")
    print("compositing (any face filter):")
    for f in dataclasses.fields(CompositeParams):
        print(f"  {f.name} = {f.default!r}")
    return 0


def _run_doctor(args: argparse.Namespace) -> int:
    from henshin.cli.doctor import checks, render

    print(render(checks()))
    return 0


def _native_stderr_to_devnull() -> None:
    """Send what C++ libraries write to fd 2 to /dev/null; Python's stderr keeps the terminal.

    mediapipe's graphs print TF Lite and absl banners from their own threads at
    start-up, with nothing a user can act on. Set HENSHIN_NATIVE_LOGS=1 to see them.
    """
    if os.environ.get("HENSHIN_NATIVE_LOGS"):
        return
    try:
        if sys.stderr.fileno() != 2:
            return
    except (AttributeError, OSError, ValueError):
        return  # stderr is captured (tests) or replaced: leave it alone
    sys.stderr.flush()
    sys.stderr = os.fdopen(os.dup(2), "w", buffering=1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    os.close(devnull)


def main(argv: list[str] | None = None) -> int:
    """Entry point: run a subcommand; user mistakes become one line and exit code 2."""
    args = build_parser().parse_args(argv)
    _native_stderr_to_devnull()
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO,
                        format="henshin: %(message)s", stream=sys.stderr)
    try:
        return args.run(args)
    except HenshinError as exc:
        print(f"henshin: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("henshin: interrupted; no output was written.", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
