"""What runs segments: one small interface, met by the Ray pool and by a serial pool in this process.

A pool takes segments (of any number of files, in the order given), converts
each with a ``SegmentConverter`` on some worker, retries one that fails, and
hands every finished one to ``on_result`` in the driver as soon as it is done,
while ``on_progress`` hears how many frames are written so far across the
pool. Segments that keep failing come back as ``Failure`` rows; the others are
still converted, so a rerun has less to do.

``SerialPool`` does the same one segment after another in this process: the
reference the Ray pool is tested against, and a way to debug a conversion
without a cluster.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from henshin.engine.convert import ConvertJob
from henshin.engine.distributed.plan import Segment
from henshin.engine.distributed.worker import SegmentConverter, SegmentResult

OnResult = Callable[[SegmentResult, int], None]  # a finished segment and the attempts it took
OnProgress = Callable[[int], None]  # frames written so far by the pool's workers, all segments together


@dataclass(frozen=True)
class Failure:
    """A segment that failed on every attempt, with the last error."""

    segment: Segment
    attempts: int
    error: str


class Pool(Protocol):
    """Converts segments on its workers."""

    workers: int

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

    def __init__(self, settings: ConvertJob, attempts: int = 3,
                 converter: Callable[..., SegmentConverter] = SegmentConverter) -> None:
        self.attempts = attempts
        self._converter = converter(settings, "serial")

    def describe(self) -> dict[str, object]:
        return {"kind": "serial", "workers": 1}

    def run(self, segments: Sequence[Segment], on_result: OnResult, on_progress: OnProgress) -> list[Failure]:
        failures, done = [], 0
        for segment in segments:
            for attempt in range(1, self.attempts + 1):
                try:
                    result = self._converter.convert(segment, lambda n, base=done: on_progress(base + n))
                except Exception as exc:  # noqa: BLE001 - retried, then reported with the segment named
                    if attempt == self.attempts:
                        failures.append(Failure(segment, attempt, f"{type(exc).__name__}: {exc}"))
                    continue
                done += result.frames
                on_result(result, attempt)
                break
        return failures

    def close(self) -> None:
        self._converter.close()
