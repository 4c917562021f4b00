"""The process settings a frame loop runs under: no idle spinning, no long garbage-collection pauses.

Two things cost a 2-core machine time in every run, found with ``perf`` on a
720p conversion with the default filter:

- numpy's OpenBLAS keeps a pool of one thread per core that spins (``sched_yield``)
  after every call, and the loop's small matrix products (landmark fits, 2×3
  affines) wake it on every frame: 4 % of the run's CPU and 90 000 context switches
  in 5 s, taken from the stages that do the work. Those products are far too small
  to gain from threads, so BLAS runs single-threaded for the run (threadpoolctl).
- Python's cyclic garbage collector walks every tracked object of the process in a
  full collection: with torch, mediapipe and ONNX Runtime loaded that is 30–60 ms,
  a dropped frame live. Everything alive when the run starts (modules, networks,
  the stages) lives to its end, so it is moved out of the collector's sight
  (``gc.freeze``) and only what the run makes is walked.

Both are undone when the run ends.
"""

from __future__ import annotations

import gc
import os
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def steady() -> Iterator[None]:
    """Run the body with single-threaded BLAS and the objects alive now frozen out of the collector."""
    from threadpoolctl import threadpool_limits

    # No collection first: it would cost a full walk (130 ms with torch loaded), and garbage frozen
    # now is only kept until the run ends (``unfreeze`` hands it back to the collector).
    gc.freeze()
    try:
        with threadpool_limits(limits=1, user_api="blas"):
            yield
    finally:
        gc.unfreeze()


HELPER_NICE = 10  # how much lower a helper thread runs than the frames (Linux nice steps)
# The tracker's search behind runs lowest: at 10 steps lower it still took its share of a core while
# a live frame's network ran on both, and a network whose threads meet at every layer waits for the
# slower one (one face, crop 192, a slow 2-core AMD EPYC, 10 live starts each: frame 0's network, which
# the search of the first frame runs beside, 40-92 ms, median 48, at 10 steps; 28-62, median 35, at 19;
# 23 alone). It still runs (nice steps share a core by weight), unlike under Linux's ``SCHED_IDLE``,
# under which a busy machine could starve it.
SEARCH_NICE = 19


def lower_priority(steps: int = HELPER_NICE) -> None:
    """Lower the calling thread's priority by ``steps`` nice steps, to 19 at most (and that of the
    threads it starts, such as a detector graph's or an encoder's), where the OS gives threads their
    own (Linux); elsewhere nothing changes.

    For work a viewer can wait for, beside the frames': the tracker's search behind (a small face
    found a few frames later; at the same priority it took the cores from the first live frames'
    networks, frame 0's style network 81 against 50 ms; it runs ``SEARCH_NICE`` lower) and a live
    recording's encoder. Lowering one's own priority needs no privilege.
    """
    if not sys.platform.startswith("linux"):
        return
    tid = threading.get_native_id()
    try:
        os.setpriority(os.PRIO_PROCESS, tid, min(os.getpriority(os.PRIO_PROCESS, tid) + steps, 19))
    except OSError:  # a sandbox that refuses it: the thread runs at the frames' priority
        pass


class Gate:
    """Where the frames' heaviest work (the networks) marks itself running, so that helper work that is
    ahead of its need can wait for it to end.

    A network whose threads meet at every layer waits for the slower: a file's decoding thread beside
    it (6.5 ms of CPU a 720p frame at 30 fps) made the default filter's network at crop 160 take 24.5 ms
    at the median against 19 alone, whatever the decoder's nice value (a sleeper that wakes is given
    the core at once).
    """

    def __init__(self) -> None:
        self._lock = threading.Condition()
        self._running = 0

    @contextmanager
    def running(self) -> Iterator[None]:
        """Mark the body as the frames' heavy work."""
        with self._lock:
            self._running += 1
        try:
            yield
        finally:
            with self._lock:
                self._running -= 1
                if not self._running:
                    self._lock.notify_all()

    def wait_idle(self, timeout: float) -> bool:
        """Wait until no heavy work runs, ``timeout`` seconds at most; whether none does."""
        with self._lock:
            return self._lock.wait_for(lambda: self._running == 0, timeout)


NETWORKS = Gate()  # the live loop's filter stage; a file played live decodes between its runs
