"""``henshin batch``: many files with one set of settings, each output written whole.

The files come from a manifest (one ``INPUT OUTPUT`` pair a line; ``#``
comments; quotes for paths with spaces; relative paths are taken from the
manifest's folder) or from ``--in-dir``/``--out-dir`` (every video in one
folder, each to the same name in the other). The whole list is checked before
any work: a missing input, two lines with one output, or an output that is
one of the inputs is refused. With ``--ray`` the segments of all files go
through one worker pool; without it the files are converted one after another.
"""

from __future__ import annotations

import argparse
import logging
import shlex
from pathlib import Path
from typing import Any

from henshin.cli.convert import add_convert_options, job_from_args
from henshin.cli.distributed import add_ray_options, check_ray_options, run_distributed_cli
from henshin.cli.options import write_stats
from henshin.engine.sinks import VIDEO_SUFFIXES
from henshin.errors import InputNotFoundError, OptionError, OutputError

log = logging.getLogger("henshin")

# Inputs --in-dir picks up; outputs keep the suffix when it can be written, else become .mp4.
INPUT_SUFFIXES = frozenset(VIDEO_SUFFIXES | {".webm", ".avi"})

Pairs = list[tuple[Path, Path]]


def add_parser(sub: Any) -> None:
    """The ``batch`` subcommand."""
    p = sub.add_parser("batch", help="convert many videos with one set of settings (optionally on Ray)")
    p.add_argument("manifest", nargs="?", type=Path, metavar="MANIFEST",
                   help="a text file with one 'INPUT OUTPUT' pair a line")
    p.add_argument("--in-dir", type=Path, metavar="DIR", help="convert every video in DIR (instead of a manifest)")
    p.add_argument("--out-dir", type=Path, metavar="DIR", help="with --in-dir: where the outputs go, same names")
    add_convert_options(p)
    add_ray_options(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Read and check the whole list, then convert it."""
    check_ray_options(args)
    settings = job_from_args(args, Path(), Path())  # the options first: --in-dir makes --out-dir
    rows = _files(args)
    check_pairs(rows, args.overwrite, str(args.manifest))
    if args.ray:
        return run_distributed_cli(args, settings, [(src, dst) for _, src, dst in rows])
    return _one_by_one(args, settings, rows)


def read_manifest(path: Path) -> list[tuple[int, Path, Path]]:
    """(line number, input, output) for each pair in a manifest; a malformed line is one sentence."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise InputNotFoundError(f"{path} does not exist; give a manifest file with one 'INPUT OUTPUT' pair a line.") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise OptionError(f"{path} cannot be read as a text manifest ({exc}); give a text file.") from None
    rows = []
    for number, line in enumerate(text.splitlines(), 1):
        try:
            fields = shlex.split(line, comments=True)
        except ValueError as exc:
            raise OptionError(f"line {number} of {path}: {exc}; quote paths with spaces.") from None
        if not fields:
            continue
        if len(fields) != 2:
            raise OptionError(f"line {number} of {path}: expected INPUT OUTPUT, got {line.strip()!r}.")
        src, dst = (Path(f).expanduser() for f in fields)
        rows.append((number, path.parent / src, path.parent / dst))  # an absolute path stays as it is
    if not rows:
        raise OptionError(f"{path} lists no files; give one 'INPUT OUTPUT' pair a line.")
    return rows


def from_dirs(in_dir: Path, out_dir: Path) -> list[tuple[int, Path, Path]]:
    """Every video in ``in_dir`` (name order) to the same name in ``out_dir``."""
    if not in_dir.is_dir():
        raise InputNotFoundError(f"--in-dir {in_dir} is not a folder; give the folder of the input videos.")
    if not out_dir.resolve().parent.is_dir():
        raise OutputError(f"the folder holding --out-dir {out_dir} does not exist; create it or choose another.")
    videos = sorted(p for p in in_dir.iterdir() if p.is_file() and p.suffix.lower() in INPUT_SUFFIXES)
    if not videos:
        raise InputNotFoundError(f"{in_dir} holds no videos ({', '.join(sorted(INPUT_SUFFIXES))}).")
    out_dir.mkdir(exist_ok=True)
    return [(0, p, out_dir / (p.name if p.suffix.lower() in VIDEO_SUFFIXES else p.stem + ".mp4")) for p in videos]


def check_pairs(rows: list[tuple[int, Path, Path]], overwrite: bool, where: str) -> None:
    """Refuse the whole list for a missing input, a repeated output, an output that is an input, or one that exists.

    ``number`` 0 marks pairs that come from --in-dir rather than a manifest line.
    """
    from henshin.engine.sinks import check_output

    inputs = {src.resolve(): number for number, src, _ in rows if src.exists()}
    outputs: dict[Path, int] = {}
    for number, src, dst in rows:
        at = f"line {number} of {where}: " if number else ""
        other = f"the input of line {inputs.get(dst.resolve())}" if number else "one of the inputs"
        if not src.is_file():
            raise InputNotFoundError(f"{at}{src} does not exist; fix the path or remove the line.")
        if dst.suffix.lower() not in VIDEO_SUFFIXES:
            raise OptionError(f"{at}output {dst} should end in one of {', '.join(sorted(VIDEO_SUFFIXES))}.")
        key = dst.resolve()
        if key in inputs:
            raise OutputError(f"{at}{dst} is {other}; choose a different output path.")
        if key in outputs:
            raise OptionError(f"{at}{dst} is also the output of line {outputs[key]}; give each input its own output.")
        outputs[key] = number
        check_output(dst, [src], overwrite)


def _files(args: argparse.Namespace) -> list[tuple[int, Path, Path]]:
    if args.manifest is not None and (args.in_dir or args.out_dir):
        raise OptionError("give a MANIFEST or --in-dir/--out-dir, not both.")
    if args.manifest is not None:
        return read_manifest(args.manifest)
    if args.in_dir is None or args.out_dir is None:
        raise OptionError("batch needs a MANIFEST, or both --in-dir and --out-dir.")
    return from_dirs(args.in_dir, args.out_dir)


def _one_by_one(args: argparse.Namespace, settings: Any, rows: list[tuple[int, Path, Path]]) -> int:
    """Without --ray: each file through a local conversion, in order."""
    import dataclasses

    from henshin.engine.convert import convert

    docs = []
    for _, src, dst in rows:
        stats = convert(dataclasses.replace(settings, input=src, output=dst, extra_sinks=[]))
        docs.append(stats.to_json() | {"input": str(src), "output": str(dst)})
        if not args.quiet:
            log.info("wrote %s: %d frames, %.1f fps", dst, stats.frames_out, docs[-1]["fps"])
    write_stats(args.stats, {"mode": "batch", "files": docs, "filter": settings.filter, "params": settings.params})
    return 0
