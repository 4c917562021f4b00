"""Where frames go: one interface for every output, and fan-out to several at once.

A sink takes output frames in order with their timestamps (``write``), and
either finishes (``close``: a file appears complete under its name) or
discards what it wrote (``abort``). Files: ``henshin.engine.files``; the virtual
camera and the preview window: ``henshin.engine.screens``. ``Tee`` sends the same
frames to several sinks (``live --record``, ``convert --preview``); ``Behind``
writes one from a thread of its own (a live recording's encoder).
"""

from __future__ import annotations

import os
import queue
import re
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

from henshin.engine.formats import IMAGE_SUFFIXES, VIDEO_SUFFIXES, image_name
from henshin.engine.steady import lower_priority
from henshin.errors import OptionError, OutputError
from henshin.outputs import check_writable
from henshin.types import Frame

NUMBERED = re.compile(r"^\d{6}\.png$")  # image_name(i, None): what a folder output of a video is made of


class Sink(Protocol):
    """Takes output frames in order; ``close`` finishes, ``abort`` discards.

    ``repeats``: live, whether the sink also takes the last frame again on the
    camera's ticks when no new one is ready (a virtual camera must keep its
    rate; a file records each frame once, at its capture time). A sink with a
    window also has ``pump(seconds)``: its event loop, which the scheduler runs
    on the main thread while ``write`` is called from another (see ``pump``).
    """

    repeats: bool

    def write(self, frame: Frame, image: np.ndarray) -> None: ...

    def close(self) -> None: ...

    def abort(self) -> None: ...


class NullSink:
    """Counts frames and drops them: for benchmarks and tests."""

    repeats = True

    def __init__(self) -> None:
        self.frames = 0

    def write(self, frame: Frame, image: np.ndarray) -> None:
        self.frames += 1

    def close(self) -> None:
        pass

    def abort(self) -> None:
        pass


class Behind:
    """A sink written from a thread of its own at a lower priority (``lower_priority``), so the frames'
    way to the other sinks never waits for it: every frame is kept, in order, and ``write`` waits only
    while ``depth`` frames are queued (the sink fell behind for good).

    Live ``--record`` is one: its H.264 encode (about 28 ms of CPU a 720p frame at ``veryfast`` on
    two cores) ran in the output thread before the virtual camera was sent the frame, and on the
    cores the next frame's networks needed; two faces at 720p took 148 ms from capture to the
    sinks at the median with a recording against 68 without. An error in the thread (a full disk)
    is raised by the next ``write`` or by ``close``; ``abort`` drops what is queued.
    """

    def __init__(self, sink: Sink, depth: int = 16, name: str = "henshin-record") -> None:
        self.sink = sink
        self.repeats = sink.repeats
        self._queue: queue.Queue[tuple[Frame, np.ndarray] | None] = queue.Queue(depth)
        self._error: BaseException | None = None
        self._dropping = False
        self._done = False  # the sink closed or aborted: once
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def write(self, frame: Frame, image: np.ndarray) -> None:
        """Queue a frame (its image is not copied: the caller leaves it as it is)."""
        self._raise()
        self._queue.put((frame, image))

    def close(self) -> None:
        """Write what is queued, then close the sink; the thread's error, if any, is raised (the sink aborted)."""
        self._end()
        if self._error is not None:
            self.abort()
            self._raise()
        if not self._done:
            self._done = True
            self.sink.close()

    def abort(self) -> None:
        """Drop what is queued and abort the sink."""
        self._dropping = True
        self._end()
        if not self._done:
            self._done = True
            self.sink.abort()

    def _run(self) -> None:
        lower_priority()  # and the encoder's threads, which it starts on the first frame
        while (item := self._queue.get()) is not None:
            if self._error is None and not self._dropping:
                try:
                    self.sink.write(*item)
                except BaseException as exc:  # raised in the caller's thread (write, close)
                    self._error = exc

    def _end(self) -> None:
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()

    def _raise(self) -> None:
        if self._error is not None:
            raise self._error


class Tee:
    """The same frames to several sinks; if one fails, every sink is aborted."""

    def __init__(self, sinks: list[Sink]) -> None:
        self.sinks = list(sinks)
        self.repeats = any(s.repeats for s in self.sinks)

    def write(self, frame: Frame, image: np.ndarray, repeated: bool = False) -> None:
        """Send a frame; a ``repeated`` one (live ticks) goes only to sinks that take repeats."""
        for sink in self.sinks:
            if not repeated or sink.repeats:
                sink.write(frame, image)

    def pump(self, seconds: float) -> bool:
        """Run the event loop of every sink that has a window for about ``seconds``; False when none has."""
        return pump(self.sinks, seconds)

    def close(self) -> None:
        try:
            for sink in self.sinks:
                sink.close()
        except BaseException:
            self.abort()
            raise

    def abort(self) -> None:
        for sink in self.sinks:
            try:
                sink.abort()
            except Exception:  # noqa: BLE001 - every sink gets its abort whatever one of them raises
                pass


def pump(sinks: Sequence[object], seconds: float) -> bool:
    """Serve the windows among ``sinks`` on this (the main) thread for about ``seconds``; False when there are none.

    GUI toolkits serve a window only from the main thread, so a scheduler whose
    main thread only waits calls this instead of sleeping.
    """
    loops = list(_windows(sinks))
    for loop in loops:
        loop(seconds / len(loops))
    return bool(loops)


def _windows(sinks: Sequence[object]) -> Iterator[Callable[[float], object]]:
    """The event loops of the windows among ``sinks``, a Tee's sinks included (a Tee is not a window)."""
    for sink in sinks:
        if isinstance(sink, Tee):
            yield from _windows(sink.sinks)
        elif callable(getattr(sink, "pump", None)):
            yield sink.pump


def check_output(path: Path, inputs: list[Path], overwrite: bool, taken: Sequence[tuple[str, Path]] = (),
                 what: str = "output") -> None:
    """Refuse an output that is or holds an input, exists (without ``overwrite``) or cannot be written.

    A folder output may exist: its images are written beside what it holds
    (``check_folder_names`` then checks the names the run will write).
    """
    folder = output_kind(path) == "folder"
    check_writable(path, inputs=inputs, taken=taken, overwrite=overwrite, folder=folder, what=what)


def check_folder_names(path: Path, names: list[str] | None, overwrite: bool) -> None:
    """Refuse, without ``overwrite``, a folder output that already holds a file the run would write.

    ``names``: the input images' names (written as PNGs of the same stem); None: numbered ``000000.png``...
    """
    if not path.is_dir() or overwrite:
        return
    clash = _clashes(path, names)
    if clash:
        more = f" and {len(clash) - 1} more" if len(clash) > 1 else ""
        raise OutputError(f"output folder {path} already holds {clash[0]}{more}, which this run would write; "
                          "pass --overwrite to replace those files or choose another folder.")


def _clashes(folder: Path, names: list[str] | None) -> list[str]:
    existing = set(os.listdir(folder))
    if names is None:
        return sorted(n for n in existing if NUMBERED.match(n))
    return [n for n in dict.fromkeys(image_name(i, names) for i in range(len(names))) if n in existing]


def output_kind(path: Path) -> str:
    """``video``, ``image`` or ``folder``, from the output path's suffix."""
    suffix = path.suffix.lower()
    if suffix in VIDEO_SUFFIXES:
        return "video"
    if suffix in IMAGE_SUFFIXES:
        return "image"
    if suffix:
        raise OptionError(
            f"output {path} has an unknown suffix {suffix!r}; use .mp4 for video, .png/.jpg for an image, or a folder name."
        )
    return "folder"


