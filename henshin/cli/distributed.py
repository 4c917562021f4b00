"""``--ray``: the options of a distributed conversion, shared by ``convert`` and ``batch``, and its run."""

from __future__ import annotations

import argparse
import logging
import os
import time
from pathlib import Path
from typing import Any

from henshin.cli.options import write_stats
from henshin.errors import OptionError

log = logging.getLogger("henshin")


def add_ray_options(p: argparse.ArgumentParser) -> None:
    """--ray, --address, --workers, --segment-seconds, --work-dir, --verbose."""
    g = p.add_argument_group("distributed (Ray)")
    g.add_argument("--ray", action="store_true",
                   help="convert by segments on Ray workers (pip install 'henshin[ray]'); a local Ray without --address")
    g.add_argument("--address", metavar="ADDR",
                   help="Ray cluster to join: auto (this machine's cluster) or ray://HOST:PORT (default: start a local Ray)")
    g.add_argument("--workers", type=int, metavar="N",
                   help="Ray workers (default: one per GPU, else one per 2 CPUs)")
    g.add_argument("--segment-seconds", type=float, default=10.0, metavar="S",
                   help="about how long each segment is (default 10); segments start on keyframes")
    g.add_argument("--work-dir", type=Path, metavar="DIR",
                   help="where finished segments are kept for a rerun (default $HENSHIN_HOME/segments)")
    g.add_argument("--verbose", action="store_true",
                   help="show Ray's own output (its notes, the workers' output and errors) on the terminal "
                        "instead of in a log file in the work folder")


def check_ray_options(args: argparse.Namespace) -> None:
    """Refuse Ray options without --ray and what a segment cannot do, before any work."""
    ray_only = [name for name, value in (("--address", args.address), ("--workers", args.workers),
                                         ("--work-dir", args.work_dir), ("--verbose", args.verbose or None))
                if value is not None]
    if not args.ray:
        if ray_only:
            raise OptionError(f"{ray_only[0]} applies to a distributed conversion; add --ray or drop it.")
        return
    if args.workers is not None and args.workers < 1:
        raise OptionError(f"--workers expects a whole number of at least 1, got {args.workers}.")
    if not args.segment_seconds > 0:
        raise OptionError(f"--segment-seconds expects a positive number of seconds, got {args.segment_seconds}.")
    if getattr(args, "preview", False):
        raise OptionError("--preview shows a local conversion; drop it or drop --ray.")
    if args.face:
        raise OptionError("--face numbers faces by their order of appearance in the whole video, which a segment "
                          "cannot know; drop --face or convert without --ray.")


def run_distributed_cli(args: argparse.Namespace, settings: Any, files: list[tuple[Path, Path]]) -> int:
    """Convert ``files`` on a Ray pool with the settings of ``settings`` (a ConvertJob); write the stats.

    The caller has checked ``args`` with ``check_ray_options`` before any other work.
    """
    from henshin.engine.distributed.run import DistributedJob, run_distributed
    from henshin.engine.distributed.scheduler import RayPool, require_ray
    from henshin.engine.distributed.workdir import default_root

    require_ray()
    job = DistributedJob(files, settings, segment_seconds=args.segment_seconds, overwrite=args.overwrite,
                         work_root=args.work_dir, progress=settings.scheduling.progress)
    # --device cpu keeps to CPU actors on a cluster with GPUs.
    gpus = getattr(settings.runtime, "device", None) != "cpu"
    ray_log = None if args.verbose else ray_log_path(args.work_dir or default_root())
    stats = run_distributed(job, lambda: RayPool(settings, args.address, args.workers, gpus=gpus, log=ray_log))
    doc = stats.to_json() | {"filter": settings.filter, "params": settings.params}
    write_stats(args.stats, doc)
    if not args.quiet:
        log.info("wrote %s: %d frames in %d segments (%d converted, %d kept from an earlier run) on %d workers, "
                 "%.1f fps (%.1f s of it starting the workers)", ", ".join(str(o) for _, o in files),
                 doc["frames_out"], doc["segments_total"], doc["segments_converted"], doc["segments_reused"],
                 len(doc["workers"]), doc["fps"], doc["startup_s"])
    return 0


def ray_log_path(root: Path) -> Path:
    """Where this run's Ray output goes: ``<work folder>/logs/ray-<date>-<time>-<pid>.log``."""
    return root / "logs" / f"ray-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"
