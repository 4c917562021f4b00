"""``henshin sample OUT.mp4``: a test clip of a real face photo with known motion and a tone.

``--shots`` writes a clip that fades in from black and cuts hard three times
instead: twice to other backgrounds, face positions and sizes, then a zoom cut
to the same face 1.6× larger on the same background (for tracking from the first
frame, shot changes, and zoom cuts that colour histograms cannot see).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from henshin.errors import OptionError

log = logging.getLogger("henshin")


def add_parser(sub: Any) -> None:
    """The ``sample`` subcommand."""
    p = sub.add_parser("sample", help="write a sample clip: a face with known motion and a tone")
    p.add_argument("output", type=Path, help="output .mp4")
    p.add_argument("--width", type=int, default=640, help="an even number of pixels (default 640)")
    p.add_argument("--height", type=int, default=480, help="an even number of pixels (default 480)")
    p.add_argument("--frames", type=int, default=72)
    p.add_argument("--fps", type=int, default=24)
    p.add_argument("--faces", type=int, default=1)
    p.add_argument("--shots", action="store_true",
                   help="a fade from black, two hard cuts to other backgrounds, face positions and sizes, "
                        "and a zoom cut (the same face 1.6x larger, same background); --frames is split "
                        "between the four shots; --faces is ignored")
    p.add_argument("--overwrite", action="store_true", help="replace an existing file")
    p.set_defaults(run=run)


# What the clip can be: H.264 4:2:0 needs even sides; a face needs some room.
LIMITS = {"--width": (64, 7680), "--height": (64, 4320), "--frames": (1, 100_000), "--fps": (1, 240),
          "--faces": (1, 16)}


def check_spec(args: argparse.Namespace) -> None:
    """Refuse sizes, lengths and counts the clip cannot have, with one sentence each."""
    for flag, (low, high) in LIMITS.items():
        value = getattr(args, flag[2:])
        if not low <= value <= high:
            raise OptionError(f"{flag} expects a whole number from {low} to {high}, got {value}.")
    for flag in ("--width", "--height"):
        value = getattr(args, flag[2:])
        if value % 2:
            raise OptionError(f"{flag} expects an even number (H.264 needs even sides), got {value}; "
                              f"use {value + 1}.")


def run(args: argparse.Namespace) -> int:
    """Write the clip under a temporary name, then move it into place."""
    from henshin.outputs import check_writable, commit, discard, partial_path, write_error
    from henshin.samples import SampleSpec, ShotsSpec, write_sample, write_shots_sample

    if args.output.suffix.lower() != ".mp4":
        raise OptionError(f"sample output should end in .mp4, got {args.output}.")
    check_spec(args)
    if args.shots and args.frames < 12:
        raise OptionError(f"--shots needs at least 12 frames (four shots), got {args.frames}.")
    check_writable(args.output, overwrite=args.overwrite, what="sample output")
    tmp = partial_path(args.output)
    try:
        if args.shots:
            quarter = args.frames // 4
            shots = ShotsSpec(width=args.width, height=args.height, fps=args.fps, audio=True,
                              shots=(args.frames - 3 * quarter, quarter, quarter, quarter),
                              fade=min(6, quarter))
            write_shots_sample(tmp, shots)
            what = f"{shots.frames} frames at {shots.fps} fps, cuts at frames {', '.join(map(str, shots.cuts))}"
        else:
            spec = SampleSpec(width=args.width, height=args.height, frames=args.frames, fps=args.fps,
                              faces=args.faces)
            write_sample(tmp, spec)
            what = f"{spec.frames} frames at {spec.fps} fps"
    except OSError as exc:
        discard(tmp)
        raise write_error(exc, args.output) from None
    except BaseException:
        discard(tmp)
        raise
    commit(tmp, args.output)
    log.info("wrote %s (%dx%d, %s, with audio)", args.output, args.width, args.height, what)
    return 0
