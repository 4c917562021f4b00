"""The bench suite: runs named scenarios (registered through ``bench.harness``), each in its
own Python process, and writes ``bench.json``, ``bench.md`` and ``bench.png``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.harness import SCENARIOS, Entry, process_peak_mb


def registry() -> dict[str, Entry]:
    """Every scenario, importing the modules that define them first."""
    from bench import (  # noqa: F401 - imported for their registrations
        convert,
        distill,
        edits,
        gnr,
        latent,
        live,
        panel,
        ray,
        temporal,
        tracker,
        versus,
    )

    return SCENARIOS


# -- running -----------------------------------------------------------------------


def run_here(name: str, quick: bool) -> dict[str, Any]:
    """Run one scenario in this process; an exception becomes an ``error`` entry."""
    entry = registry()[name]
    start = time.perf_counter()
    try:
        result = entry.fn(quick)
    except Exception as exc:  # noqa: BLE001 - one failing scenario must not sink the suite
        traceback.print_exc()
        result = {"title": entry.summary, "error": f"{type(exc).__name__}: {exc}"}
    for key in ("cases", "pairs", "notes", "skipped"):
        result.setdefault(key, [])
    result.setdefault("title", entry.summary)
    return {"scenario": name, "quick": quick, **result, "wall_s": round(time.perf_counter() - start, 2),
            "peak_rss_mb": process_peak_mb()}


def run_isolated(name: str, quick: bool, log: Path) -> dict[str, Any]:
    """Run one scenario in a fresh interpreter (``python -m bench --worker``); its output goes to ``log``."""
    with tempfile.TemporaryDirectory() as tmp:
        result_file = Path(tmp) / "result.json"
        cmd = [sys.executable, "-m", "bench", "--worker", name, "--worker-out", str(result_file)]
        if quick:
            cmd.append("--quick")
        root = str(Path(__file__).resolve().parent.parent)  # so ``-m bench`` resolves from any working directory
        path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)
        env = {**os.environ, "PYTHONPATH": path, "GLOG_minloglevel": "2", "TF_CPP_MIN_LOG_LEVEL": "3"}
        with log.open("a") as out:
            out.write(f"\n==== {name} ====\n")
            out.flush()
            code = subprocess.call(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
        if result_file.is_file():
            return json.loads(result_file.read_text())
    return {"scenario": name, "quick": quick, "title": registry()[name].summary, "cases": [], "pairs": [],
            "notes": [], "skipped": [], "error": f"the worker exited with status {code}; see {log}"}


def run_suite(names: list[str], quick: bool, out: Path, isolate: bool = True,
              echo: Callable[[str], None] = print) -> dict[str, Any]:
    """Run scenarios in order, write JSON, Markdown and PNG into ``out``; return the document."""
    from bench import report
    from bench.common import machine

    out.mkdir(parents=True, exist_ok=True)
    log = out / "bench.log"
    log.write_text("")
    results = []
    for name in names:
        echo(f"bench: {name}{' (quick)' if quick else ''} ...")
        result = run_isolated(name, quick, log) if isolate else run_here(name, quick)
        status = f"error: {result['error']}" if result.get("error") else f"{result['wall_s']} s"
        echo(f"bench: {name} done, {status}")
        results.append(result)
    doc = {"suite": "henshin bench", "quick": quick, "machine": machine(),
           "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "scenarios": results}
    report.write_all(doc, out)
    return doc


# -- command line ------------------------------------------------------------------


def main(argv: list[str] | None = None, default: list[str] | None = None) -> None:
    """``python -m bench [SCENARIO ...] [--quick] [--out DIR] [--list]``."""
    import argparse

    from bench import report

    entries = registry()
    parser = argparse.ArgumentParser(prog="python -m bench", description="Run henshin's benchmark scenarios; "
                                     "write bench.json, bench.md and bench.png into --out.")
    parser.add_argument("scenarios", nargs="*", metavar="SCENARIO", help="scenarios to run (default: all but smoke)")
    parser.add_argument("--quick", action="store_true", help="short clips, one run each: about 2 minutes instead of 13 on 2 cores")
    parser.add_argument("--out", type=Path, default=Path("bench/results"), help="folder for the results")
    parser.add_argument("--list", action="store_true", help="list the scenarios and exit")
    parser.add_argument("--in-process", action="store_true",
                        help="run scenarios in this process (peak memory is then shared between them)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--worker-out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.list:
        width = max(len(n) for n in entries)
        for entry in entries.values():
            print(f"{entry.name.ljust(width)}  {entry.summary}{'' if entry.default else '  (not in the default run)'}")
        return
    if args.worker:
        result = run_here(args.worker, args.quick)
        args.worker_out.write_text(json.dumps(result, indent=2, default=str))
        return
    names = args.scenarios or default or [e.name for e in entries.values() if e.default]
    unknown = [n for n in names if n not in entries]
    if unknown:
        parser.error(f"unknown scenario {', '.join(unknown)}; expected one of: {', '.join(entries)} (see --list)")
    doc = run_suite(names, args.quick, args.out, isolate=not args.in_process)
    print()
    print(report.markdown(doc))
    print(f"wrote {args.out / 'bench.json'}, {args.out / 'bench.md'}, {args.out / 'bench.png'}")
    if any(r.get("error") for r in doc["scenarios"]):
        raise SystemExit(1)
