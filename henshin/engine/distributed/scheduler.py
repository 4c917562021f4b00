"""The Ray pool: one actor per GPU (or CPU actors), each converting whole segments.

The only module of henshin that imports Ray (``pip install 'henshin[ray]'``).
Ray places the actors, restarts one whose process dies and runs its segment
again (``max_restarts``, ``max_task_retries``), and retries a segment whose
worker ran out of memory (``retry_exceptions`` names only that); anything else a
worker raises stops the run at once. The driver only hands the next segment to
whichever actor is free and reads a small progress actor for the one progress
bar and for why a segment was attempted again. Segments and results travel as
small rows and encoded bytes: no pixels go through Ray's object store.

Ray's own output (its log lines, the errors it prints on the driver, the
workers' output) goes to a log file (``log``), not to the user's terminal;
without a log file (``--verbose``) Ray prints it as it always does.

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
from pathlib import Path
from typing import Any, TextIO

from henshin.engine.convert import ConvertJob
from henshin.engine.distributed.plan import Segment
from henshin.engine.distributed.pool import (
    LOST,
    Failure,
    OnProgress,
    OnResult,
    reason,
    retryable,
    stop,
)
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
                 gpus: bool = True, log: Path | None = None) -> None:
        require_ray()
        self.address, self.log = address, log
        self._owns_ray = not ray.is_initialized()
        self._output = RayOutput(log)
        try:
            if self._owns_ray:
                _init(address)
            self.gpus, options, self.workers = _placement(workers, gpus)
            self._progress = ray.remote(num_cpus=0)(_Progress).remote()
            actor = ray.remote(max_restarts=attempts - 1, max_task_retries=attempts - 1, **options)(_Worker)
            per_actor = _per_actor(settings, options)
            self._actors = [actor.remote(converter, per_actor, f"{'gpu' if self.gpus else 'cpu'}{i}")
                            for i in range(self.workers)]
            self._names = _started(self._actors, self._output)
        except BaseException as exc:
            self.close()
            if isinstance(exc, HenshinError) and log is not None and log.exists():
                exc.add_note(f"Ray's log of this run is in {log}")
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
                ref = worker.convert.options(retry_exceptions=[OutOfMemory]).remote(segment, self._progress)
                running[ref] = (worker, segment)
            ready, _ = ray.wait(list(running), num_returns=1, timeout=POLL_S)
            for ref in ready:
                worker, segment = running.pop(ref)
                idle.append(worker)
                attempts, retries = ray.get(self._progress.finish.remote(_key(segment)))
                try:
                    result: SegmentResult = ray.get(ref)
                except ray.exceptions.RayError as exc:
                    cause = _cause(exc)
                    self._output.note(f"{segment.name} failed: {exc}")  # the worker's traceback, for the log
                    if cause is not None and not isinstance(cause, OutOfMemory):
                        raise stop(segment, cause) from None  # the same on every attempt: no retry
                    failures.append(Failure(segment, attempts, _reason(exc)))
                    continue
                written += result.frames
                on_result(result, attempts, retries)
            on_progress(written + ray.get(self._progress.total.remote()))
        return failures

    def close(self) -> None:
        """Stop the actors (and the local Ray this pool started); Ray's output goes back where it was."""
        try:
            for worker in getattr(self, "_actors", []):
                ray.kill(worker)
            if self._owns_ray and ray.is_initialized():
                ray.shutdown()
        finally:
            self._output.close()


class OutOfMemory(RuntimeError):
    """A worker ran out of memory converting a segment: the one error a worker raises that is retried."""


class RayOutput:
    """Ray's output on the driver sent to a log file while a pool runs (``path`` None: left on the terminal).

    Ray's logger (its start-up notes and warnings) gets the file as its only handler. The
    errors Ray prints from its own thread (``(raylet)`` lines: a task retried, a worker
    died, a worker's traceback) and the workers' output go through one function of Ray's,
    ``print_to_stdstream``; Ray has no setting for where they go, so that function is
    replaced while the pool runs (as Ray's own debugger silences them) and restored after.
    """

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._file: TextIO | None = None
        if path is None:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(path, "a", buffering=1)  # noqa: SIM115 - closed in close(), the pool's lifetime
        self._logger = logging.getLogger("ray")
        self._saved = self._logger.handlers[:], self._logger.propagate
        handler = logging.StreamHandler(self._file)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        self._logger.handlers, self._logger.propagate = [handler], False
        self._module = getattr(getattr(ray, "_private", None), "worker", None)
        self._print = getattr(self._module, "print_to_stdstream", None)
        if self._print is not None:
            self._module.print_to_stdstream = self._write

    def _write(self, data: dict[str, Any], ignore_prefix: bool = False) -> None:
        """Ray's ``print_to_stdstream(data, ignore_prefix)``, into the file."""
        if self._file is None or self._file.closed:
            return
        who = data.get("actor_name") or data.get("task_name") or ""
        prefix = f"({who} pid={data.get('pid')})" if who else f"({data.get('pid')})"
        for line in data.get("lines", []):
            self._file.write(f"{prefix} {line}\n")

    def note(self, text: str) -> None:
        """Write henshin's own record (a worker's error with its traceback) into the log."""
        if self._file is not None and not self._file.closed:
            self._file.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} henshin: {text}\n")

    def close(self) -> None:
        """Put Ray's logger and printing back, and close the file."""
        if self._file is None:
            return
        if self._print is not None:
            self._module.print_to_stdstream = self._print
        self._logger.handlers, self._logger.propagate = self._saved
        self._file.close()


class _Worker:
    """The actor: a ``SegmentConverter`` built once, then one segment per call."""

    def __init__(self, converter: Callable[..., SegmentConverter], settings: ConvertJob, name: str) -> None:
        self.name = f"{name}@{socket.gethostname()}"
        self.converter: SegmentConverter | None = None
        self.error: Exception | None = None
        try:
            self.converter = converter(settings, self.name)
        except Exception as exc:  # noqa: BLE001 - ready() raises it: Ray restarts an actor whose constructor raised
            self.error = exc

    def ready(self) -> str:
        """The worker's name, once its filters are built; what stopped them from being built, raised."""
        if self.error is not None:
            raise self.error
        return self.name

    def convert(self, segment: Segment, progress: Any) -> SegmentResult:
        """Convert one segment, telling ``progress`` (the progress actor) how far it is and why it failed."""
        key = _key(segment)
        progress.begin.remote(key)
        last = 0.0

        def report(frames: int) -> None:
            nonlocal last
            now = time.monotonic()
            if now - last >= POLL_S / 2 or frames == segment.frames:
                last = now
                progress.update.remote(key, frames)

        try:
            return self.converter.convert(segment, report)  # ready() has vouched for the converter
        except Exception as exc:
            if not retryable(exc):
                raise
            progress.failed.remote(key, reason(exc))  # before the next attempt's begin: one caller, in order
            raise OutOfMemory(reason(exc)) from None


class _Progress:
    """Frames written so far by the segments being converted, attempts per segment and why each failed."""

    def __init__(self) -> None:
        self.frames: dict[str, int] = {}
        self.attempts: dict[str, int] = {}
        self.reasons: dict[str, list[str]] = {}

    def begin(self, key: str) -> None:
        reasons = self.reasons.setdefault(key, [])
        if len(reasons) < self.attempts.get(key, 0):
            reasons.append(LOST)  # the attempt before ended without a word: its process died
        self.frames[key] = 0
        self.attempts[key] = self.attempts.get(key, 0) + 1

    def update(self, key: str, frames: int) -> None:
        if key in self.frames:
            self.frames[key] = frames

    def failed(self, key: str, why: str) -> None:
        self.reasons.setdefault(key, []).append(why)

    def finish(self, key: str) -> tuple[int, list[str]]:
        self.frames.pop(key, None)
        return max(self.attempts.get(key, 1), 1), self.reasons.get(key, [])

    def total(self) -> int:
        return sum(self.frames.values())


def _init(address: str | None) -> None:
    try:
        # Ray's logger keeps the handlers RayOutput gave it (configure_logging sets only format and level).
        ray.init(address=address, include_dashboard=False, log_to_driver=True, logging_level=logging.INFO,
                 configure_logging=True)
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
    a CPU actor's runtime (OpenVINO or ONNX Runtime) gets the actor's share of cores, not every core of its machine.
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


def _started(actors: list[Any], output: RayOutput) -> list[str]:
    """Wait for every actor's filter to be built; a worker that cannot start is one sentence (its traceback logged)."""
    try:
        return ray.get([a.ready.remote() for a in actors])
    except ray.exceptions.RayError as exc:
        output.note(f"a worker could not start: {exc}")
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
        return LOST
    return f"{type(exc).__name__}: {exc}".splitlines()[0]
