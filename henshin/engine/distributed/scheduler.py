"""The Ray pool: one actor per GPU (or CPU actors), each converting whole segments.

The only module of henshin that imports Ray (``pip install 'henshin[ray]'``).
Ray places the actors, restarts one whose process dies and retries a segment
that fails (``max_task_retries`` with ``retry_exceptions``); the driver only
hands the next segment to whichever actor is free and reads a small progress
actor for the one progress bar. Segments and results travel as small rows and
encoded bytes: no pixels go through Ray's object store.

``address``: None starts a local Ray on this machine (``ray.init()``); ``auto``
joins the cluster this machine is part of (``ray start --head`` / ``ray start
--address``); ``ray://HOST:PORT`` goes through Ray Client.
"""

from __future__ import annotations

import dataclasses
import logging
import socket
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from henshin.engine.convert import ConvertJob
from henshin.engine.distributed.plan import Segment
from henshin.engine.distributed.pool import Failure, OnProgress, OnResult
from henshin.engine.distributed.worker import SegmentConverter, SegmentResult
from henshin.errors import HenshinError, OptionError, RuntimeUnavailableError

try:
    import ray
except ImportError:  # the optional extra is not installed: RayPool says how to install it
    ray = None

log = logging.getLogger("henshin")

INSTALL = "pip install 'henshin[ray]'"
POLL_S = 0.5  # how often the driver reads the workers' progress


def available() -> bool:
    """Whether Ray is installed here."""
    return ray is not None


def require_ray() -> None:
    """Say how to install Ray when it is missing."""
    if ray is None:
        raise RuntimeUnavailableError(f"--ray needs Ray, which is not installed; install it with {INSTALL} "
                                      "(on every machine of the cluster).")


class RayPool:
    """Ray actors that convert segments; a local Ray is started (and stopped) when none is running.

    One actor per GPU where the cluster has GPUs (``gpus=False``: CPU actors even then), else
    ``workers`` CPU actors (default one per 2 CPUs) sharing the CPUs evenly.
    """

    def __init__(self, settings: ConvertJob, address: str | None = None, workers: int | None = None,
                 attempts: int = 3, converter: Callable[..., SegmentConverter] = SegmentConverter,
                 gpus: bool = True) -> None:
        require_ray()
        self.address = address
        self._owns_ray = not ray.is_initialized()
        if self._owns_ray:
            _init(address)
        try:
            self.gpus, options, self.workers = _placement(workers, gpus)
            self._progress = ray.remote(num_cpus=0)(_Progress).remote()
            actor = ray.remote(max_restarts=attempts - 1, max_task_retries=attempts - 1, **options)(_Worker)
            per_actor = _per_actor(settings, options)
            self._actors = [actor.remote(converter, per_actor, f"{'gpu' if self.gpus else 'cpu'}{i}")
                            for i in range(self.workers)]
            self._names = _started(self._actors)
        except BaseException:
            self.close()
            raise

    def describe(self) -> dict[str, Any]:
        return {"kind": "ray", "address": self.address or "local", "workers": self.workers,
                "device": "gpu" if self.gpus else "cpu", "actors": self._names}

    def run(self, segments: Sequence[Segment], on_result: OnResult, on_progress: OnProgress) -> list[Failure]:
        queue, idle = deque(segments), list(self._actors)
        running: dict[Any, tuple[Any, Segment]] = {}
        failures: list[Failure] = []
        written = 0  # frames of finished segments (their progress rows are dropped)
        while queue or running:
            while queue and idle:
                worker, segment = idle.pop(), queue.popleft()
                ref = worker.convert.options(retry_exceptions=True).remote(segment, self._progress)
                running[ref] = (worker, segment)
            ready, _ = ray.wait(list(running), num_returns=1, timeout=POLL_S)
            for ref in ready:
                worker, segment = running.pop(ref)
                idle.append(worker)
                attempts = ray.get(self._progress.finish.remote(_key(segment)))
                try:
                    result: SegmentResult = ray.get(ref)
                except ray.exceptions.RayError as exc:
                    failures.append(Failure(segment, attempts, _reason(exc)))
                    continue
                written += result.frames
                on_result(result, attempts)
            on_progress(written + ray.get(self._progress.total.remote()))
        return failures

    def close(self) -> None:
        """Stop the actors (and the local Ray this pool started)."""
        for worker in getattr(self, "_actors", []):
            ray.kill(worker)
        if self._owns_ray and ray.is_initialized():
            ray.shutdown()


class _Worker:
    """The actor: a ``SegmentConverter`` built once, then one segment per call."""

    def __init__(self, converter: Callable[..., SegmentConverter], settings: ConvertJob, name: str) -> None:
        self.name = f"{name}@{socket.gethostname()}"
        self.converter = converter(settings, self.name)

    def ready(self) -> str:
        return self.name

    def convert(self, segment: Segment, progress: Any) -> SegmentResult:
        """Convert one segment, telling ``progress`` (the progress actor) how far it is."""
        key = _key(segment)
        progress.begin.remote(key)
        last = 0.0

        def report(frames: int) -> None:
            nonlocal last
            now = time.monotonic()
            if now - last >= POLL_S / 2 or frames == segment.frames:
                last = now
                progress.update.remote(key, frames)

        return self.converter.convert(segment, report)


class _Progress:
    """Frames written so far by the segments being converted, and attempts per segment."""

    def __init__(self) -> None:
        self.frames: dict[str, int] = {}
        self.attempts: dict[str, int] = {}

    def begin(self, key: str) -> None:
        self.frames[key] = 0
        self.attempts[key] = self.attempts.get(key, 0) + 1

    def update(self, key: str, frames: int) -> None:
        if key in self.frames:
            self.frames[key] = frames

    def finish(self, key: str) -> int:
        self.frames.pop(key, None)
        return max(self.attempts.get(key, 1), 1)

    def total(self) -> int:
        return sum(self.frames.values())


def _init(address: str | None) -> None:
    try:
        ray.init(address=address, include_dashboard=False, log_to_driver=False,
                 logging_level=logging.WARNING, configure_logging=True)
    except (ConnectionError, ValueError) as exc:  # no cluster there, or ray:// without ray[client]
        raise RuntimeUnavailableError(f"Ray could not start or connect with --address {address}: "
                                      f"{str(exc).splitlines()[0]}") from None
    except SystemExit:  # Ray exits when the address does not answer
        raise RuntimeUnavailableError(f"no Ray cluster answers at --address {address}; start one with "
                                      "`ray start --head` or check the address.") from None


def _placement(workers: int | None, use_gpus: bool) -> tuple[int, dict[str, Any], int]:
    """GPUs the actors use, the actor options, and how many actors: one per GPU, else CPU actors."""
    resources = ray.cluster_resources()
    gpus, cpus = int(resources.get("GPU", 0)) if use_gpus else 0, int(resources.get("CPU", 0))
    if gpus:
        count = workers or gpus
        if count > gpus:
            raise OptionError(f"--workers {count} asks for more GPU workers than the cluster's {gpus} GPUs; "
                              f"give at most {gpus}.")
        return gpus, {"num_gpus": 1, "num_cpus": 1}, count
    count = workers or max(1, cpus // 2)
    if count > max(cpus, 1):
        raise OptionError(f"--workers {count} asks for more workers than the cluster's {cpus} CPUs; "
                          f"give at most {cpus}.")
    return 0, {"num_cpus": max(1, cpus // count)}, count


def _per_actor(settings: ConvertJob, options: dict[str, Any]) -> ConvertJob:
    """The settings as one actor uses them.

    A GPU actor sees only its own GPU (Ray sets CUDA_VISIBLE_DEVICES), so ``cuda:N`` becomes ``cuda``;
    a CPU actor's ONNX Runtime gets the actor's share of cores, not every core of its machine.
    """
    from henshin.runtimes import RuntimeOptions

    runtime = settings.runtime or RuntimeOptions()
    if options.get("num_gpus"):
        if not (runtime.device or "").startswith("cuda:"):
            return settings
        runtime = dataclasses.replace(runtime, device="cuda")
    else:
        runtime = dataclasses.replace(runtime, threads=options["num_cpus"])
    return dataclasses.replace(settings, runtime=runtime)


def _started(actors: list[Any]) -> list[str]:
    """Wait for every actor's filter to be built; a worker that cannot start is one sentence."""
    try:
        return ray.get([a.ready.remote() for a in actors])
    except ray.exceptions.RayError as exc:
        cause = _cause(exc)
        if isinstance(cause, HenshinError):
            raise type(cause)(f"a Ray worker could not start: {cause}") from None
        raise RuntimeUnavailableError(f"a Ray worker could not start: {_reason(exc)}") from None


def _key(segment: Segment) -> str:
    return f"{segment.input}#{segment.index}"


def _cause(exc: BaseException) -> BaseException | None:
    cause = getattr(exc, "cause", None)
    return cause if isinstance(cause, BaseException) else None


def _reason(exc: BaseException) -> str:
    """The error behind a Ray error, in one line."""
    cause = _cause(exc)
    if cause is not None:
        return f"{type(cause).__name__}: {cause}".splitlines()[0]
    if isinstance(exc, ray.exceptions.RayActorError):
        return "the worker process died (out of memory, or killed)"
    return f"{type(exc).__name__}: {exc}".splitlines()[0]
