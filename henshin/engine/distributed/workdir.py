"""The work folder of a distributed conversion: finished segments kept for a rerun.

A folder per input and settings, named by a key made of the input's content
hash, everything that changes the output (filter, parameters, tracking,
smoothing, encoder, runtime), the segment plan's parameters and henshin's
version, so a rerun after a crash or Ctrl-C finds exactly the segments that
still fit and converts only the rest. A segment counts as finished when its
video file exists under its final name: it is written under a temporary name
and renamed, after its record, so a half-written one is never taken.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

from henshin import __version__
from henshin.outputs import write_atomic


def work_key(input_hash: str, settings: dict[str, Any], plan: dict[str, Any]) -> str:
    """The folder name for one input converted with ``settings`` and cut by ``plan``."""
    doc = json.dumps({"input": input_hash, "settings": settings, "plan": plan, "henshin": __version__},
                     sort_keys=True, default=str)
    return hashlib.sha256(doc.encode()).hexdigest()[:24]


def default_root() -> Path:
    """``<henshin cache>/segments`` (``$HENSHIN_HOME`` or the user cache directory)."""
    from henshin.models.store import cache_root

    return cache_root() / "segments"


class WorkFolder:
    """Finished segments of one input under one key, with a record each."""

    def __init__(self, root: Path, key: str) -> None:
        self.path = root / key

    def open(self, about: dict[str, Any]) -> None:
        """Create the folder, with a note of what it is for (for a person cleaning up)."""
        self.path.mkdir(parents=True, exist_ok=True)
        write_atomic(self.path / "about.json", json.dumps(about, indent=2, default=str).encode())

    def video(self, index: int) -> Path:
        """Where segment ``index``'s encoded video is kept."""
        return self.path / f"segment-{index:05d}.mp4"

    def finished(self, index: int) -> bool:
        """Whether segment ``index`` is complete (its video and its record are both there)."""
        return self.video(index).is_file() and self._record(index).is_file()

    def record(self, index: int) -> dict[str, Any]:
        """What was recorded when segment ``index`` finished (frames, seconds, worker)."""
        return json.loads(self._record(index).read_text())

    def store(self, index: int, data: bytes, record: dict[str, Any]) -> None:
        """Keep a finished segment: its record, then its video under a temporary name renamed into place."""
        self.path.mkdir(parents=True, exist_ok=True)
        write_atomic(self._record(index), json.dumps(record, indent=2).encode())
        write_atomic(self.video(index), data)

    def remove(self) -> None:
        """Delete the folder once its output is complete."""
        shutil.rmtree(self.path, ignore_errors=True)

    def _record(self, index: int) -> Path:
        return self.path / f"segment-{index:05d}.json"

