"""What runs segments: one small interface, met by the Ray pool and by a serial pool in this process.

A pool takes segments (of any number of files, in the order given), converts
each with a ``SegmentConverter`` on some worker, and hands every finished one to
``on_result`` in the driver as soon as it is done, while ``on_progress`` hears
how many frames are written so far across the pool.

Only what another attempt can fix is retried: a worker or node lost, memory
run out (``retryable``). Segments that keep failing that way come back as
``Failure`` rows; the others are still converted, so a rerun has less to do.
Anything else (bad input, options, a missing model: the same on every attempt)
stops the run at once with its sentence (``stop``).

``SerialPool`` does the same one segment after another in this process: the
reference the Ray pool is tested against, and a way to debug a conversion
without a cluster.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from henshin.engine.convert import ConvertJob
from henshin.engine.distributed.plan import Segment
from henshin.engine.distributed.worker import SegmentConverter, SegmentResult
from henshin.errors import HenshinError

# A finished segment, the attempts it took, and why each earlier attempt failed.
OnResult = Callable[[SegmentResult, int, list[str]], None]
OnProgress = Callable[[int], None]  # frames written so far by the pool's workers, all segments together

LOST = "its worker was lost (the process died: killed, out of memory, or its machine gone)"


class SegmentError(HenshinError, RuntimeError):
    """A segment failed: at once for what no retry fixes, else on every attempt."""


def retryable(exc: BaseException) -> bool:
    """Whether another attempt may succeed: memory ran out (Python's, CUDA's or Ray's), nothing else raised."""
    return isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError"


def reason(exc: BaseException) -> str:
    """An exception in one line: its type and the first line of its message."""
    return f"{type(exc).__name__}: {exc}".splitlines()[0]


def stop(segment: Segment, exc: BaseException) -> HenshinError:
    """The error that ends the run at once when ``segment`` failed with ``exc``, which no retry fixes."""
    if isinstance(exc, HenshinError):
        text = str(exc) if segment.name in str(exc) else f"{segment.name}: {exc}"
        try:
            return type(exc)(text)
        except TypeError:  # a subclass with its own constructor: its sentence as it is
            return exc
    return SegmentError(f"{segment.name} failed with {reason(exc)}; another attempt would fail the same way, "
                        "so the run stopped (report it if the input plays elsewhere).")


@dataclass(frozen=True)
class Failure:
    """A segment that failed on every attempt, with the last error."""

    segment: Segment
    attempts: int
    error: str


class Pool(Protocol):
    """Converts segments on its workers."""

    workers: int
    log: Path | None  # where the pool's own log of this run is (None: nowhere, or on the terminal)

    def describe(self) -> dict[str, object]:
        """What the pool is, for the stats (kind, address, workers, devices)."""
        ...

    def run(self, segments: Sequence[Segment], on_result: OnResult, on_progress: OnProgress) -> list[Failure]:
        """Convert every segment; the ones that kept failing are returned."""
        ...

    def close(self) -> None:
        """Release the workers."""
        ...


class SerialPool:
    """One worker in this process, one segment after another."""

    workers = 1
    log = None

    def __init__(self, settings: ConvertJob, attempts: int = 3,
                 converter: Callable[..., SegmentConverter] = SegmentConverter) -> None:
        self.attempts = attempts
        self._converter = converter(settings, "serial")

    def describe(self) -> dict[str, object]:
        return {"kind": "serial", "workers": 1}

    def run(self, segments: Sequence[Segment], on_result: OnResult, on_progress: OnProgress) -> list[Failure]:
        failures, done = [], 0
        for segment in segments:
            retries: list[str] = []
            for attempt in range(1, self.attempts + 1):
                try:
                    result = self._converter.convert(segment, lambda n, base=done: on_progress(base + n))
                except Exception as exc:
                    if not retryable(exc):
                        raise stop(segment, exc) from None
                    retries.append(reason(exc))
                    if attempt == self.attempts:
                        failures.append(Failure(segment, attempt, reason(exc)))
                    continue
                done += result.frames
                on_result(result, attempt, retries)
                break
        return failures

    def close(self) -> None:
        self._converter.close()
