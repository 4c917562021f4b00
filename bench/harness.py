"""The bench harness: the scenario registry, repeats, spread, memory and the result format.

Scenario modules import this; ``bench.suite`` imports the scenario modules and runs them.

A scenario is a function ``(quick: bool) -> dict`` registered under a name. The
runner gives each scenario its own Python process, so peak memory and loaded
libraries of one scenario never colour the next, collects the dicts, adds the
machine, and writes ``bench.json``, ``bench.md`` and ``bench.png`` (see
``bench.report``).

What a scenario returns (JSON-able; keys beyond these are kept in the JSON)::

    {
      "title":   "one line naming what was measured",
      "cases":   [Case, ...],            # one table row each
      "pairs":   [Pair, ...],            # side-by-side comparisons, each with its ratio
      "notes":   ["what a reader must know", ...],
      "skipped": [{"case": "...", "reason": "..."}, ...],
    }

    Case = {
      "name":        "style face 1280x720 b4",
      "fps":         Spread,             # end-to-end frames per second (video cases)
      "ms":          Spread,             # or a latency in ms (cases that are not a video run)
      "stage_ms":    {"decode": .., "track": .., "align": .., "filter": .., "composite": .., "encode": ..},
                                         # median over repeats of ms per frame spent in each stage
      "latency_ms":  {"p50": .., "p95": .., "p99": ..},        # live cases
      "warping_error": {"input": .., "output": .., "ratio": ..}, # inside the face area, 8-bit levels
      "peak_rss_mb": ..,                 # the process's peak resident memory during a timed run (largest
                                         # over repeats; includes what earlier runs left resident)
      "peak_gpu_mb": ..,                 # torch's peak CUDA allocation, None without CUDA
    }
    Spread = {"median": .., "min": .., "max": .., "runs": [..]}
    Pair = {
      "name": "...", "unit": "fps" | "ms",
      "baseline":  {"label": "...", "value": ..},
      "candidate": {"label": "...", "value": ..},
      "ratio": ..,                       # how many times faster the candidate is:
                                         # fps: candidate / baseline; ms: baseline / candidate
      ...                                # detail, e.g. the picture check of a comparison
    }

The runner adds ``scenario``, ``quick``, ``wall_s``, ``peak_rss_mb`` (the whole
scenario process) and, when the scenario raised, ``error``.
"""

from __future__ import annotations

import resource
import statistics
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")
Scenario = Callable[[bool], dict[str, Any]]


@dataclass(frozen=True)
class Entry:
    """A registered scenario."""

    name: str
    fn: Scenario
    summary: str
    default: bool = True  # part of a bare ``python -m bench``


SCENARIOS: dict[str, Entry] = {}


def scenario(name: str, summary: str, default: bool = True) -> Callable[[Scenario], Scenario]:
    """Decorator: register ``fn(quick) -> result dict`` as scenario ``name``."""

    def add(fn: Scenario) -> Scenario:
        SCENARIOS[name] = Entry(name, fn, summary, default)
        return fn

    return add


# -- repeats, spread, memory ---------------------------------------------------


@dataclass(frozen=True)
class Plan:
    """How many untimed warm-up runs and timed repeats a measurement gets."""

    warmup: int
    repeats: int


def plan(quick: bool) -> Plan:
    """Quick: one timed run and no warm-up; full: one warm-up and three repeats."""
    return Plan(0, 1) if quick else Plan(1, 3)


def spread(values: list[float], digits: int = 2) -> dict[str, Any]:
    """Median, min and max of repeated figures, and the figures themselves."""
    return {"median": round(statistics.median(values), digits), "min": round(min(values), digits),
            "max": round(max(values), digits), "runs": [round(v, digits) for v in values]}


@dataclass
class Memory:
    """Peaks seen inside a ``peak_memory()`` block, in MiB."""

    rss_mb: float | None = None
    gpu_mb: float | None = None

    def as_case(self) -> dict[str, Any]:
        """The ``peak_rss_mb`` / ``peak_gpu_mb`` keys of a case."""
        return {"peak_rss_mb": self.rss_mb, "peak_gpu_mb": self.gpu_mb}


@contextmanager
def peak_memory() -> Iterator[Memory]:
    """Peak resident memory (and torch's peak CUDA allocation) over the block.

    Linux lets a process reset its own high-water mark (``/proc/self/clear_refs``),
    so the peak is this block's, not the process's so far; where that is not
    possible, it is ``ru_maxrss``, the process's peak up to the block's end.
    """
    memory = Memory()
    _reset_rss_peak()
    cuda = _torch_cuda()
    if cuda is not None:
        cuda.synchronize()
        cuda.reset_peak_memory_stats()
    try:
        yield memory
    finally:
        memory.rss_mb = round(_rss_peak_mb(), 1)
        if cuda is not None:
            cuda.synchronize()
            memory.gpu_mb = round(cuda.max_memory_allocated() / 2**20, 1)


_PEAK_BEFORE_RESET = 0.0  # the process's peak, kept across the resets below


def process_peak_mb() -> float:
    """This process's peak resident memory so far, in MiB, resets included."""
    return round(max(_PEAK_BEFORE_RESET, _rss_peak_mb()), 1)


def _reset_rss_peak() -> bool:
    global _PEAK_BEFORE_RESET
    _PEAK_BEFORE_RESET = max(_PEAK_BEFORE_RESET, _rss_peak_mb())
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _rss_peak_mb() -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    scale = 1 if sys.platform == "darwin" else 1024  # bytes on macOS, KiB elsewhere
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20


def _torch_cuda() -> Any:
    torch = sys.modules.get("torch")  # only when something already loaded it: no import cost
    if torch is not None and torch.cuda.is_available():
        return torch.cuda
    return None


def repeat(fn: Callable[[], T], quick: bool) -> list[T]:
    """Run ``fn`` for the plan's warm-up (discarded), then its timed repeats."""
    return repeat_each([fn], quick)[0]


def repeat_each(fns: Sequence[Callable[[], T]], quick: bool) -> list[list[T]]:
    """Warm each up, then run them round-robin (a, b, c, a, b, c ...); the runs of each.

    Round-robin spreads drift in the machine (other work starting, thermal) over
    every contender alike instead of letting it fall on whichever ran last.
    Several contenders are always warmed up, quick or not: with one timed run
    each, the first would otherwise pay the process's cold start alone.
    """
    steps = plan(quick)
    for _ in range(steps.warmup if len(fns) == 1 else max(steps.warmup, 1)):
        for fn in fns:
            fn()
    runs: list[list[T]] = [[] for _ in fns]
    for _ in range(steps.repeats):
        for fn, out in zip(fns, runs, strict=True):
            out.append(fn())
    return runs


def measured(fn: Callable[[], dict[str, Any]]) -> Callable[[], dict[str, Any]]:
    """Wrap one run: its ``wall_s`` and ``peak_rss_mb`` / ``peak_gpu_mb`` are added to what it returns."""

    def run() -> dict[str, Any]:
        with peak_memory() as memory:
            start = time.perf_counter()
            out = fn()
            wall = time.perf_counter() - start
        return {**out, "wall_s": round(wall, 3), **memory.as_case()}

    return run


def peaks(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The largest ``peak_rss_mb`` / ``peak_gpu_mb`` over measured runs."""
    gpu = [r["peak_gpu_mb"] for r in runs if r.get("peak_gpu_mb") is not None]
    return {"peak_rss_mb": max(r["peak_rss_mb"] for r in runs), "peak_gpu_mb": max(gpu) if gpu else None}


def pair(name: str, unit: str, baseline: tuple[str, float], candidate: tuple[str, float],
         **detail: Any) -> dict[str, Any]:
    """A side-by-side record; ``ratio`` is how many times faster the candidate is."""
    base, cand = baseline[1], candidate[1]
    if unit == "fps":
        ratio = cand / base if base else None
    else:
        ratio = base / cand if cand else None
    return {"name": name, "unit": unit, "baseline": {"label": baseline[0], "value": base},
            "candidate": {"label": candidate[0], "value": cand},
            "ratio": None if ratio is None else round(ratio, 3), **detail}
