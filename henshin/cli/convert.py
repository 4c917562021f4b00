"""``henshin convert INPUT OUTPUT``: a video, image or folder through the filters into a file."""

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

log = logging.getLogger("henshin")


def add_parser(sub: Any) -> None:
    """The ``convert`` subcommand."""
    from henshin.cli.distributed import add_ray_options

    p = sub.add_parser("convert", help="filter a video, image or folder of images into a file")
    p.add_argument("input", type=Path, help="video file, image, or folder of images")
    p.add_argument("output", type=Path, help="output .mp4/.mov/.mkv, image, or folder")
    add_convert_options(p)
    p.add_argument("--preview", action="store_true", help="show the output in a window while converting")
    add_ray_options(p)
    p.set_defaults(run=run)


def add_convert_options(p: argparse.ArgumentParser) -> None:
    """Filter, tracking, smoothing, encoder and output options (shared with ``batch``)."""
    add_filter_options(p)
    p.add_argument("--stats", type=Path, metavar="STATS.json", help="write run statistics as JSON")
    p.add_argument("--warping-error", action="store_true",
                   help="measure temporal stability into --stats: the warping error of output and input "
                        "where the filter changed pixels (two optical flows per frame)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing output file and --stats file; in an output folder, the files of "
                        "the same names (nothing else is removed)")
    p.add_argument("--max-faces", type=int, default=4, metavar="N", help="faces to track (default 4)")
    p.add_argument("--smooth", type=int, default=4, metavar="FRAMES",
                   help="alignment smoothing half-window in frames; 0 turns it off (default 4)")
    p.add_argument("--batch", type=int, default=4, metavar="FRAMES",
                   help="frames whose faces are filtered together (default 4)")
    p.add_argument("--crf", type=int, default=18, help="H.264 quality, lower is better (default 18)")
    p.add_argument("--preset", default="veryfast", help="x264 speed preset (default veryfast)")


def job_from_args(args: argparse.Namespace, input: Path, output: Path) -> Any:
    """The ConvertJob the shared options ask for (each checked)."""
    from henshin.engine.convert import ConvertJob
    from henshin.engine.files import check_encoder
    from henshin.engine.offline import OfflineConfig
    check_count("--max-faces", args.max_faces, 1)
    check_count("--smooth", args.smooth, 0)
    check_count("--batch", args.batch, 1)
    check_encoder(args.crf, args.preset)
    check_stats(args.stats, [input], [("the output", output)], args.overwrite)
    choice = filter_choice(args, args.max_faces, max(8, args.batch * args.max_faces))
    return ConvertJob(
        input=input, output=output, filter=choice.filter, params=choice.params, faces=choice.faces,
        tracker=choice.tracker, smooth_radius=args.smooth, cuts=choice.cuts, measure_stability=args.warping_error,
        scheduling=OfflineConfig(batch_frames=args.batch, progress=not args.quiet and sys.stderr.isatty()),
        overwrite=args.overwrite, crf=args.crf, preset=args.preset, runtime=choice.runtime,
        taken=[("--stats", args.stats)] if args.stats else [],
    )


def run(args: argparse.Namespace) -> int:
    """Check every option, convert, write the stats."""
    from henshin.cli.distributed import check_ray_options
    from henshin.engine.convert import convert
    from henshin.engine.stats import RunStats

    check_ray_options(args)
    job = job_from_args(args, args.input, args.output)
    if args.ray:
        from henshin.cli.distributed import run_distributed_cli

        return run_distributed_cli(args, job, [(args.input, args.output)])
    if args.preview:
        from henshin.engine.screens import PreviewSink

        job.extra_sinks.append(PreviewSink(lambda line: None))
    stats = RunStats()
    try:
        convert(job, stats)
    except KeyboardInterrupt as exc:
        exc.kept = f"{args.output} was not written"
        if args.stats and stats.frames_in:
            write_stats(args.stats, _doc(stats, args, job) | {"output": None})
            exc.kept += f"; the figures so far are in {args.stats}"
        raise
    doc = _doc(stats, args, job)
    write_stats(args.stats, doc)
    if not args.quiet:
        log.info("wrote %s: %d frames, %d with faces, %.1f fps", args.output, stats.frames_out,
                 stats.frames_with_faces, doc["fps"])
    return 0


def _doc(stats: Any, args: argparse.Namespace, job: Any) -> dict[str, Any]:
    return stats.to_json() | {"input": str(args.input), "output": str(args.output), "filter": args.filter,
                              "routes": {str(k): v for k, v in job.faces.items()}, "params": job.params}
