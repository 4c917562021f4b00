"""What one ``henshin distill`` run is asked to do, as plain data, and its work folder."""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from henshin.distill.augment import Augment
from henshin.errors import OptionError
from henshin.home import cache_root
from henshin.outputs import ensure_folder, write_atomic

DEFAULT_MINUTES = 20.0  # pairs and training together, when neither --minutes nor --steps is given
PAIRS_SHARE = 0.35  # of a --minutes budget, at most, for making pairs


@dataclass
class DistillConfig:
    """One distillation: the teacher chain and its sources, the student, the budget, the work folder."""

    name: str
    chain: str
    params: dict[str, str] = field(default_factory=dict)
    sources: list[Path] = field(default_factory=list)
    student: str = "small"
    size: int = 256
    minutes: float | None = None
    steps: int | None = None
    batch: int = 16
    device: str = "cpu"
    tracker: str = "mediapipe"  # the face tracker's backend (--tracker, resolved) and its device
    tracker_device: str = "cpu"
    tracker_dtype: str = "fp32"  # the torch tracker's networks (--tracker-precision, resolved)
    work_dir: Path | None = None
    overwrite: bool = False
    seed: int = 0
    max_pairs: int = 2000  # training pairs at most (each a crop and its target at ``size``)
    draws: int = 2  # augmented pairs per chosen face
    held_out_frames: int = 24  # held-out frames at most, over all sources
    patch: int = 0  # training crop side (0: half of ``size`` from 192 up, else ``size``)
    lr: float = 2e-3
    augment: Augment = field(default_factory=Augment)
    progress: bool = True

    @property
    def budget_s(self) -> float | None:
        """The wall-clock budget for pairs and training together (None: run ``steps`` steps)."""
        if self.minutes is not None:
            return self.minutes * 60.0
        return None if self.steps is not None else DEFAULT_MINUTES * 60.0

    @property
    def train_patch(self) -> int:
        """The side of the crops the student trains on (it is fully convolutional)."""
        return self.patch or (self.size // 2 if self.size >= 192 else self.size)

    def folder(self) -> Path:
        """The work folder: ``--work-dir`` or ``<cache>/distill/NAME``."""
        return (
            Path(self.work_dir).expanduser()
            if self.work_dir
            else cache_root() / "distill" / self.name
        )

    def pairs_key(self) -> dict[str, Any]:
        """What the cached pairs depend on: teacher, sources (name, size, time), crop size, seed, augmentation."""
        sources = []
        for path in self.sources:
            stat = Path(path).stat()
            sources.append(
                [str(Path(path).resolve()), stat.st_size if path.is_file() else 0, stat.st_mtime_ns]
            )
        return {
            "chain": self.chain,
            "params": dict(sorted(self.params.items())),
            "sources": sources,
            "size": self.size,
            "seed": self.seed,
            "augment": vars(self.augment),
            "max_pairs": self.max_pairs,
            "draws": self.draws,
            "held_out_frames": self.held_out_frames,
            # another tracker cuts slightly other crops; named only when not mediapipe, so the work
            # folders of runs from before --tracker existed still resume
            **({"tracker": self.tracker} if self.tracker != "mediapipe" else {}),
            **({"tracker_dtype": self.tracker_dtype} if self.tracker_dtype != "fp32" else {}),
        }

    def train_key(self) -> dict[str, Any]:
        """What a training checkpoint depends on besides the pairs."""
        return {
            "student": self.student,
            "patch": self.train_patch,
            "batch": self.batch,
            "lr": self.lr,
        }


WORK_FILES = ("run.json", "pairs", "train.pt", "look.npy")  # what henshin writes in a work folder


def digest(data: Any) -> str:
    """A short stable hash of JSON-able data."""
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def open_work_folder(config: DistillConfig) -> Path:
    """The work folder, created, or checked to hold this same run (resumed); --overwrite starts it again."""
    folder = config.folder()
    run_file = folder / "run.json"
    key = {
        "pairs": digest(config.pairs_key()),
        "train": digest(config.train_key()),
        "name": config.name,
    }
    if run_file.is_file() and not config.overwrite:
        try:
            seen = json.loads(run_file.read_text())
        except (OSError, ValueError):
            seen = {}
        if seen.get("key") != key:
            raise OptionError(
                f"work folder {folder} holds another distill run (other teacher, sources or student); "
                "give another --work-dir, or --overwrite to start it again."
            )
        return folder
    if config.overwrite:
        for name in WORK_FILES:  # only what henshin wrote there; anything else in the folder stays
            target = folder / name
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()
    ensure_folder(folder / "pairs", "the distill work folder")
    write_json(run_file, {"key": key, "config": describe(config), "elapsed_s": 0.0})
    return folder


def describe(config: DistillConfig) -> dict[str, Any]:
    """The run as plain JSON (what run.json records)."""
    return {
        "name": config.name,
        "chain": config.chain,
        "params": config.params,
        "sources": [str(p) for p in config.sources],
        "student": config.student,
        "size": config.size,
    }


def read_json(path: Path) -> dict[str, Any]:
    """A JSON file henshin wrote, or {} when absent or damaged."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}


def write_json(path: Path, doc: dict[str, Any]) -> None:
    """Write JSON atomically."""
    write_atomic(
        Path(path), (json.dumps(doc, indent=2) + "\n").encode(), f"the distill work file {path}"
    )
