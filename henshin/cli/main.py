"""The ``henshin`` command line: the parser, the options commands share, and the entry point."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from henshin import __version__
from henshin.errors import HenshinError, Interrupted, OptionError

log = logging.getLogger("henshin")


def build_parser() -> argparse.ArgumentParser:
    """The whole command line: one subcommand per module of ``henshin.cli``."""
    from henshin.cli import convert, doctor, filters, live, models, sample

    parser = argparse.ArgumentParser(prog="henshin", description="Real-time face video filters.")
    parser.add_argument("--version", action="version", version=f"henshin {__version__}")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar or notes")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in (convert, live, sample, filters, doctor, models):
        module.add_parser(sub)
    return parser


def add_filter_options(p: argparse.ArgumentParser) -> None:
    """--filter, --face, --param and the runtime options, shared by convert and live."""
    p.add_argument("--filter", default="style", metavar="CHAIN",
                   help="filter, or a chain like warp+style (default: style); see `henshin filters`")
    p.add_argument("--face", action="append", default=[], metavar="N=CHAIN",
                   help="send face N (numbered in order of appearance from 0) to its own chain, repeatable")
    p.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                   help="filter or compositing parameter, repeatable; LINK.KEY=VALUE for one link of a chain")
    p.add_argument("--runtime", default="auto", metavar="NAME",
                   help="auto, torch, onnxruntime or tensorrt (default auto: TensorRT with a GPU, "
                        "else torch on CUDA, else ONNX Runtime on the CPU)")
    p.add_argument("--precision", default=None, metavar="P",
                   help="fp32, fp16 or bf16 (default: fp16 on a GPU, fp32 on the CPU)")
    p.add_argument("--device", default=None, metavar="DEV", help="cpu, cuda or cuda:N (default: the runtime's best)")
    p.add_argument("--compile", action="store_true", help="torch runtime: compile the network with torch.compile")
    p.add_argument("--cuda-graphs", action="store_true",
                   help="torch runtime on a GPU: capture each input shape once as a CUDA graph and replay it")


def runtime_options(args: argparse.Namespace, max_batch: int = 8) -> Any:
    """The RuntimeOptions the command line asks for, checked against this machine before any work."""
    from henshin.runtimes import RuntimeOptions
    from henshin.runtimes.options import check_available

    options = RuntimeOptions(runtime=args.runtime, precision=args.precision, device=args.device, max_batch=max_batch,
                             compile=args.compile, cuda_graphs=args.cuda_graphs)
    check_available(options)
    return options


def parse_param_pairs(pairs: list[str]) -> dict[str, str]:
    """``["style=3", "strength=0.5"]`` → dict, with a clear error for a malformed pair."""
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise OptionError(f"--param expects KEY=VALUE, got {pair!r}.")
        out[key.strip()] = value.strip()
    return out


def parse_face_routes(pairs: list[str]) -> dict[int, str]:
    """``["0=gnr", "1=warp+style"]`` → {0: "gnr", 1: "warp+style"}, each checked."""
    out: dict[int, str] = {}
    for pair in pairs:
        number, sep, chain = pair.partition("=")
        if not sep or not number.strip().isdigit() or not chain.strip():
            raise OptionError(f"--face expects N=CHAIN with N a face number from 0 (like 1=style), got {pair!r}.")
        out[int(number)] = chain.strip()
    return out


def check_count(name: str, value: int | None, low: int) -> None:
    """A whole-number option below its least value is one sentence."""
    if value is not None and value < low:
        raise OptionError(f"{name} expects a whole number of at least {low}, got {value}.")


def check_stats(path: Path | None, inputs: list[Path], taken: list[tuple[str, Path]], overwrite: bool) -> None:
    """Refuse a ``--stats`` path before work starts: an input, another output, a folder, or existing without --overwrite."""
    if path is not None:
        from henshin.outputs import check_writable

        check_writable(path, inputs=inputs, taken=taken, overwrite=overwrite, what="--stats")


def write_stats(path: Path | None, doc: dict[str, Any]) -> None:
    """Write the ``--stats`` document, when asked for (complete or not at all)."""
    if path is not None:
        from henshin.outputs import write_atomic

        write_atomic(path, (json.dumps(doc, indent=2) + "\n").encode(), f"--stats {path}")


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


STOP_SIGNALS = ("SIGTERM", "SIGHUP")  # what kill, systemd, container runtimes and a closed terminal send


def _stop_on_signals() -> dict[int, Any]:
    """Turn SIGTERM and SIGHUP into an ``Interrupted`` in the main thread, as Ctrl-C is; returns the old handlers.

    Only the first one interrupts: a second while cleaning up must not cut the cleanup short.
    """
    if threading.current_thread() is not threading.main_thread():
        return {}
    seen: list[int] = []

    def stop(signum: int, frame: Any) -> None:
        if seen:
            return
        seen.append(signum)
        raise Interrupted(signum, signal.Signals(signum).name)

    previous = {}
    for name in STOP_SIGNALS:
        number = getattr(signal, name, None)
        if number is not None:
            previous[number] = signal.signal(number, stop)
    return previous


def _restore(handlers: dict[int, Any]) -> None:
    for number, handler in handlers.items():
        signal.signal(number, handler)


def main(argv: list[str] | None = None) -> int:
    """Entry point: run a subcommand; user mistakes become one line and exit code 2, signals 128 + the signal."""
    args = build_parser().parse_args(argv)
    _native_stderr_to_devnull()
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO,
                        format="henshin: %(message)s", stream=sys.stderr)
    handlers = _stop_on_signals()
    try:
        return args.run(args)
    except HenshinError as exc:
        print(f"henshin: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        signum = getattr(exc, "signum", signal.SIGINT)
        name = getattr(exc, "name", "Ctrl-C")
        kept = getattr(exc, "kept", "") or "nothing half-written was left behind"
        print(f"henshin: stopped by {name}; {kept}.", file=sys.stderr)
        return 128 + int(signum)
    finally:
        _restore(handlers)


if __name__ == "__main__":
    sys.exit(main())
