"""``henshin sample OUT.mp4``: a test clip of a real face photo with known motion and a tone.

``--shots`` writes a clip that fades in from black and cuts hard twice instead
(for tracking from the first frame and shot changes).
"""

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
    p.add_argument("--shots", action="store_true",
                   help="a fade from black and two hard cuts to other backgrounds, face positions and sizes "
                        "(--frames is split between the three shots; --faces is ignored)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Write the clip under a temporary name, then move it into place."""
    from henshin.samples import SampleSpec, ShotsSpec, write_sample, write_shots_sample

    if args.output.suffix.lower() != ".mp4":
        raise OptionError(f"sample output should end in .mp4, got {args.output}.")
    tmp = args.output.with_name(f".{args.output.name}.partial.mp4")
    if args.shots:
        if args.frames < 9:
            raise OptionError(f"--shots needs at least 9 frames (three shots), got {args.frames}.")
        third = args.frames // 3
        shots = ShotsSpec(width=args.width, height=args.height, fps=args.fps, audio=True,
                          shots=(args.frames - 2 * third, third, third), fade=min(6, third))
        write_shots_sample(tmp, shots)
        os.replace(tmp, args.output)
        log.info("wrote %s (%dx%d, %d frames at %d fps, cuts at frames %s, with audio)", args.output, shots.width,
                 shots.height, shots.frames, shots.fps, ", ".join(map(str, shots.cuts)))
        return 0
    spec = SampleSpec(width=args.width, height=args.height, frames=args.frames, fps=args.fps, faces=args.faces)
    write_sample(tmp, spec)
    os.replace(tmp, args.output)
    log.info("wrote %s (%dx%d, %d frames at %d fps, with audio)", args.output, spec.width, spec.height,
             spec.frames, spec.fps)
    return 0
