"""``henshin live``: a camera (or a video file in real time) through the filters to a virtual camera."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

from henshin.cli.options import (
    add_filter_options,
    check_count,
    check_stats,
    filter_choice,
    write_stats,
)
from henshin.errors import OptionError

log = logging.getLogger("henshin")


def add_parser(sub: Any) -> None:
    """The ``live`` subcommand."""
    p = sub.add_parser("live", help="camera (or a video file) → filter → virtual camera / preview")
    p.add_argument("--source", default="0", help="camera index, /dev/videoN, or a video file (default 0)")
    p.add_argument("--sink", action="append", choices=["vcam", "preview", "null"], default=None,
                   help="where frames go, repeatable (default vcam)")
    p.add_argument("--record", type=Path, metavar="OUT.mp4", help="also record what is sent, with the camera's timestamps")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --record or --stats file")
    add_filter_options(p)
    p.add_argument("--width", type=int, help="camera width to ask for")
    p.add_argument("--height", type=int, help="camera height to ask for")
    p.add_argument("--fps", type=float, help="camera frame rate to ask for")
    p.add_argument("--loop", action="store_true", help="loop a file source")
    p.add_argument("--max-frames", type=int, metavar="N", help="stop after N captured frames")
    p.add_argument("--max-faces", type=int, default=2, metavar="N", help="faces to track (default 2)")
    p.add_argument("--stats", type=Path, metavar="STATS.json", help="write run statistics as JSON")
    p.add_argument("--overlay", action="store_true", help="draw fps, latency and the look (style 5 oil-paint) on the output")
    p.add_argument("--latency-budget", type=float, default=100.0, metavar="MS",
                   help="capture-to-result latency the governor holds by trading quality for time: smaller "
                        "crops, a slower detector, still faces held, the filter's own steps (default 100; "
                        "0 turns it off)")
    p.add_argument("--vcam-device", help="virtual camera device, e.g. /dev/video10")
    p.add_argument("--panel", metavar="[HOST:]PORT",
                   help="serve a control panel (a page and a WebSocket API) at HOST:PORT; HOST defaults to 127.0.0.1")
    p.add_argument("--vcam-backend", help=argparse.SUPPRESS)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Check every option, open the source, the filters and the sinks, run until the end."""
    from henshin.engine.camera import open_live_source
    from henshin.engine.chains import ChainRequest, FilterGraph
    from henshin.engine.files import VideoFileSink
    from henshin.engine.governor import check_budget
    from henshin.engine.live import LiveConfig, LiveRunner, read_commands
    from henshin.engine.sinks import Behind
    from henshin.engine.smoothing import OneEuroSmoother
    from henshin.engine.stages import FaceStages

    check_count("--max-frames", args.max_frames, 1)
    check_count("--max-faces", args.max_faces, 1)
    check_budget(args.latency_budget)
    inputs = [Path(args.source)] if not args.source.isdigit() and Path(args.source).exists() else []
    if args.record is not None:
        _check_record(args, inputs)
    check_stats(args.stats, inputs, [("--record", args.record)] if args.record else [], args.overwrite)
    choice = filter_choice(args, args.max_faces, max(1, args.max_faces), sweep_tiles=False, search_behind=True)
    request = ChainRequest(choice.filter, choice.faces, choice.params)
    panel = _open_panel(args.panel) if args.panel is not None else None  # a port in use: before the camera opens
    try:
        source = open_live_source(args.source, args.width, args.height, args.fps, args.loop)
    except BaseException:
        if panel is not None:
            panel.close()
        raise
    sinks: list = []
    runner_box: list = []
    graph = None
    try:
        for kind in dict.fromkeys(args.sink or ["vcam"]):
            sinks.append(_sink(kind, args, source, _Later(runner_box)))
        if args.record is not None:  # last, and encoded in a thread of its own: the camera never waits for it
            sinks.append(Behind(VideoFileSink(args.record, source.frame_rate, source.time_base)))
        graph = FilterGraph(request, choice.runtime)
    except BaseException:
        for sink in sinks:
            sink.abort()
        source.close()
        if panel is not None:
            panel.close()
        raise
    log.info("%s", source.describe())
    stages = FaceStages(graph, OneEuroSmoother(), choice.tracker, float(source.frame_rate), choice.cuts)
    runner = LiveRunner(source, stages, sinks, LiveConfig(args.max_frames, args.overlay, args.latency_budget))
    runner_box.append(runner)
    if sys.stdin is not None and not sys.stdin.closed:
        read_commands(sys.stdin, runner)  # `set strength 0.5`, `filter style`, `toggle`, `quit`
    try:
        if panel is not None:
            panel.start(runner)
            # Printed even with -q: the link is how the user gets in.
            print(f"henshin: control panel at {panel.url}", file=sys.stderr, flush=True)
        runner.run()
    finally:
        if panel is not None:
            panel.close()  # the run is over: so is the server
        graph.close()
        # The figures are written however the run ended: a failed recording, a signal, the end.
        doc = runner.stats.to_json() | {"source": str(args.source), "filter": args.filter}
        write_stats(args.stats, doc)
    _report(runner.stats, doc)
    if runner.interruption is not None:
        kept = [f"the recording {args.record}"] if args.record else []
        kept += [f"the figures in {args.stats}"] if args.stats else []
        runner.interruption.kept = f"{' and '.join(kept)} {'were' if len(kept) > 1 else 'was'} kept" if kept else ""
        raise runner.interruption
    return 0


def _open_panel(text: str) -> Any:
    """Bind the panel's address (a port in use is one sentence now) with this run's token."""
    from henshin.engine.panel import Panel
    from henshin.engine.panelstate import panel_token, parse_address
    from henshin.home import config_root

    address = parse_address(text)
    token = panel_token()
    if not address.loopback:
        log.warning("the control panel listens on %s, which other machines can reach; anyone with its link "
                    "controls this run (use 127.0.0.1 unless you need that).", address.host)
    return Panel(address, token, config_root())


class _Later:
    """The runner for the sinks' callbacks (a window's keys), made after them."""

    def __init__(self, box: list) -> None:
        self._box = box

    def __call__(self, line: str) -> None:
        self._box[0].command(line)

    def stop(self, reason: str) -> None:
        self._box[0].stop(reason)


def _report(stats: Any, doc: dict[str, Any]) -> None:
    latency = doc["latency_ms"]
    if latency["p50"] is None:
        log.warning("%s: %d captured, nothing was shown (%s); the latency figures are empty.", stats.end_reason,
                    stats.frames_in, _why_nothing(stats))
    else:
        log.info("%s: %d captured, %d processed, %d dropped; latency p50 %.1f ms, p99 %.1f ms",
                 stats.end_reason, stats.frames_in, stats.frames_processed, stats.frames_dropped,
                 latency["p50"], latency["p99"])


def _why_nothing(stats: Any) -> str:
    if not stats.frames_in:
        return "the source gave no frame"
    if not stats.frames_processed:
        return f"the run ended ({stats.end_reason}) before the first frame was processed"
    return "the sinks took no frame before the run ended"


def _check_record(args: argparse.Namespace, inputs: list[Path]) -> None:
    from henshin.engine.sinks import check_output, output_kind

    if output_kind(args.record) != "video":
        raise OptionError(f"--record {args.record} should be a video file (.mp4, .mov or .mkv).")
    check_output(args.record, inputs, args.overwrite, [("--stats", args.stats)] if args.stats else [], "--record")


def _sink(kind: str, args: argparse.Namespace, source: Any, runner: Any) -> Any:
    if kind == "vcam":
        from henshin.engine.screens import VirtualCameraSink

        sink = VirtualCameraSink(source.width, source.height, float(source.frame_rate), args.vcam_device,
                                 args.vcam_backend)
        log.info("virtual camera: %s", sink.device)
        return sink
    if kind == "preview":
        from henshin.engine.screens import PreviewSink

        return PreviewSink(runner, on_close=lambda: runner.stop("window closed"))
    from henshin.engine.sinks import NullSink

    return NullSink()
