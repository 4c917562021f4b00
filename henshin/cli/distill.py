"""``henshin distill NAME --filter CHAIN --from PATH``: teach a small student network a slow filter chain.

The student is stored as the user's own model NAME and runs as ``--filter student
--param model=NAME`` in convert, live, chains and ``--face N=student``.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

from henshin.cli.options import (
    add_tracker_option,
    check_count,
    parse_param_pairs,
    resolve_tracker,
    resolve_tracker_precision,
)
from henshin.errors import InputNotFoundError, OptionError

log = logging.getLogger("henshin")

STUDENTS = ("small", "medium", "large")


def add_parser(sub: Any) -> None:
    """The ``distill`` subcommand, with exactly the options of issue 29."""
    p = sub.add_parser(
        "distill", help="train a small student network on a slow filter chain, to run it live"
    )
    p.add_argument("name", help="the student's model name (lower-case letters, digits and dashes)")
    p.add_argument(
        "--filter",
        required=True,
        metavar="CHAIN",
        help="the teacher: a face filter chain, like style, gnr or warp+style",
    )
    p.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a teacher parameter, repeatable (LINK.KEY=VALUE for one link of a chain)",
    )
    p.add_argument(
        "--from",
        dest="sources",
        action="append",
        default=[],
        required=True,
        type=Path,
        metavar="PATH",
        help="a video, picture or folder of either with faces, repeatable",
    )
    p.add_argument(
        "--student",
        default="small",
        choices=STUDENTS,
        help="student size: small (live on two CPU cores), medium or large (default small)",
    )
    p.add_argument(
        "--size",
        type=int,
        default=256,
        help="crop side the student works at, a multiple of 16 (default 256)",
    )
    budget = p.add_mutually_exclusive_group()
    budget.add_argument(
        "--minutes",
        type=float,
        default=None,
        metavar="M",
        help="wall-clock budget for pairs and training together (default 20)",
    )
    budget.add_argument(
        "--steps", type=int, default=None, metavar="N", help="train this many steps instead"
    )
    p.add_argument("--batch", type=int, default=16, metavar="B", help="training batch (default 16)")
    p.add_argument(
        "--device", default="cpu", metavar="DEV", help="cpu, cuda or cuda:N (default cpu)"
    )
    add_tracker_option(p)
    p.add_argument(
        "--work-dir",
        type=Path,
        default=None,
        metavar="DIR",
        help="where pairs and checkpoints are kept (default: the cache's distill/NAME); the same "
        "command resumes from it",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace a student of the same name and start the work folder again",
    )
    p.set_defaults(run=run)


def config_from_args(args: argparse.Namespace) -> Any:
    """The DistillConfig the command line asks for, every option checked before any work."""
    from henshin.distill.config import DistillConfig
    from henshin.distill.teacher import check_chain
    from henshin.models.store import check_student_name

    check_student_name(args.name, args.overwrite)
    for source in args.sources:
        if not source.expanduser().exists():
            raise InputNotFoundError(
                f"--from {source} does not exist; give a video, picture or folder with faces."
            )
    if args.size < 64 or args.size % 16:
        raise OptionError(f"--size expects a multiple of 16 from 64 up, got {args.size}.")
    if args.minutes is not None and not args.minutes > 0:
        raise OptionError(f"--minutes expects a number of minutes above 0, got {args.minutes:g}.")
    check_count("--steps", args.steps, 1)
    check_count("--batch", args.batch, 1)
    device = _device(args.device)
    tracker, tracker_device = resolve_tracker(args.tracker, None if device == "cpu" else device)
    tracker_dtype = resolve_tracker_precision(args.tracker_precision, tracker, tracker_device)
    params = parse_param_pairs(args.param)
    check_chain(args.filter, params)
    return DistillConfig(
        name=args.name,
        chain=args.filter,
        params=params,
        sources=[s.expanduser() for s in args.sources],
        student=args.student,
        size=args.size,
        minutes=args.minutes,
        steps=args.steps,
        batch=args.batch,
        device=device,
        tracker=tracker,
        tracker_device=tracker_device,
        tracker_dtype=tracker_dtype,
        work_dir=args.work_dir,
        overwrite=args.overwrite,
        progress=not args.quiet and sys.stderr.isatty(),
    )


def _device(text: str) -> str:
    from henshin.runtimes import cuda_available

    if text != "cpu" and not (text == "cuda" or (text.startswith("cuda:") and text[5:].isdigit())):
        raise OptionError(f"--device expects cpu, cuda or cuda:N, got {text!r}.")
    if text != "cpu" and not cuda_available():
        raise OptionError(f"--device {text}: no CUDA GPU is available here; use --device cpu.")
    return text


def run(args: argparse.Namespace) -> int:
    """Check every option, then make pairs, train and store the student (resuming a stopped run)."""
    from tqdm import tqdm

    from henshin.distill.run import distill
    from henshin.runtimes import RuntimeOptions

    config = config_from_args(args)
    runtime = RuntimeOptions(device=None if config.device == "cpu" else config.device)
    say = (lambda line: None) if args.quiet else (lambda line: log.info("%s", line))
    try:
        distill(config, runtime, say=say, progress=tqdm if config.progress else None)
    except KeyboardInterrupt as exc:
        exc.kept = f"what was done is kept in {config.folder()}; run the same command again to go on from there"
        raise
    return 0
