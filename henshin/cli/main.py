"""The ``henshin`` command line: the parser, the options commands share, and the entry point."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from typing import Any

from henshin import __version__
from henshin.errors import HenshinError, Interrupted

log = logging.getLogger("henshin")


def build_parser() -> argparse.ArgumentParser:
    """The whole command line: one subcommand per module of ``henshin.cli``."""
    from henshin.cli import (
        batch,
        convert,
        directions,
        distill,
        doctor,
        filters,
        live,
        models,
        sample,
    )

    parser = argparse.ArgumentParser(prog="henshin", description="Real-time face video filters.")
    parser.add_argument("--version", action="version", version=f"henshin {__version__}")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar or notes")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in (convert, batch, live, sample, filters, doctor, models, directions, distill):
        module.add_parser(sub)
    return parser


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
        for note in getattr(exc, "__notes__", []):  # e.g. where a log of the failed run is
            print(f"henshin: {note}", file=sys.stderr)
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
