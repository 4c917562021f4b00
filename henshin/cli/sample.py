"""``henshin sample OUT.mp4``: a test clip of a real face photo with known motion and a tone."""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path
from typing import Any

from henshin.errors import OptionError

log = logging.getLogger("henshin")


def add_parser(sub: Any) -> None:
    """The ``sample`` subcommand."""
    p = sub.add_parser("sample", help="write a sample clip: a face with known motion and a tone")
    p.add_argument("output", type=Path, help="output .mp4")
    p.add_argument("--width", type=int, default=640)
    p.add_argument("--height", type=int, default=480)
    p.add_argument("--frames", type=int, default=72)
    p.add_argument("--fps", type=int, default=24)
    p.add_argument("--faces", type=int, default=1)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Write the clip under a temporary name, then move it into place."""
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
