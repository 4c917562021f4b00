"""Where frames go: one interface for every output, and fan-out to several at once.

A sink takes output frames in order with their timestamps (``write``), and
either finishes (``close``: a file appears complete under its name) or
discards what it wrote (``abort``). Files: ``henshin.engine.files``; the virtual
camera and the preview window: ``henshin.engine.screens``. ``Tee`` sends the same
frames to several sinks (``live --record``, ``convert --preview``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol

import numpy as np

from henshin.engine.formats import IMAGE_SUFFIXES, VIDEO_SUFFIXES
from henshin.errors import OptionError, OutputError
from henshin.types import Frame


class Sink(Protocol):
    """Takes output frames in order; ``close`` finishes, ``abort`` discards.

    ``repeats``: live, whether the sink also takes the last frame again on the
    camera's ticks when no new one is ready (a virtual camera must keep its
    rate; a file records each frame once, at its capture time).
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


def check_output(path: Path, inputs: list[Path], overwrite: bool) -> None:
    """Refuse an output that is an input, exists (without ``overwrite``) or cannot be written."""
    resolved = path.resolve()
    for src in inputs:
        if src.exists() and (resolved == src.resolve() or (path.exists() and path.samefile(src))):
            raise OutputError(f"{path} is the input; choose a different output path.")
    if path.exists() and not overwrite:
        raise OutputError(f"{path} already exists; pass --overwrite to replace it or choose another name.")
    parent = resolved.parent
    if not parent.is_dir():
        raise OutputError(f"{parent} does not exist; create the folder or choose another output path.")
    if not os.access(parent, os.W_OK):
        raise OutputError(f"{parent} is not writable; choose an output path in a folder you can write to.")


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


