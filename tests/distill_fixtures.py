"""What the distill tests share: a known smooth teacher registered as a filter, and a tiny student size."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import cv2
import numpy as np

from henshin.filters.base import FILTERS, Filter, register
from henshin.nets.student import StudentConfig
from henshin.types import FilterSpec

TEACHER = "smoothteacher"
TINY = StudentConfig((16, 32, 32), blocks=1)
COLOUR = np.array([[0.8, 0.2, 0.0], [0.1, 0.7, 0.2], [0.0, 0.3, 0.7]], np.float32)


@dataclass(frozen=True)
class SmoothParams:
    """size: the crop side the teacher asks for."""

    size: int = 128


class SmoothTeacher(Filter):
    """A fixed colour transform plus a Gaussian blur (sigma 1 crop pixel); records every crop it is given."""

    name = TEACHER
    Params = SmoothParams
    seen: ClassVar[list[tuple[int, np.ndarray]]] = []  # (frame index, crop (3, S, S) in [0, 1])

    @property
    def spec(self) -> FilterSpec:
        return FilterSpec(size=self.params.size, value_range=(0.0, 1.0))

    def process(self, batch: np.ndarray, faces) -> np.ndarray:
        for crop, face in zip(batch, faces, strict=True):
            SmoothTeacher.seen.append((face.index, np.array(crop)))
        out = np.einsum("ij,njhw->nihw", COLOUR, batch) + 0.05
        blurred = [
            cv2.GaussianBlur(np.ascontiguousarray(o.transpose(1, 2, 0)), (0, 0), 1.0) for o in out
        ]
        return np.clip(np.stack(blurred).transpose(0, 3, 1, 2), 0.0, 1.0)


def register_teacher() -> None:
    """Make the test teacher available by name (once per process)."""
    if TEACHER not in FILTERS:
        register(SmoothTeacher)


def student_config(name: str, clip: Path, work: Path, **changes) -> object:
    """A small DistillConfig over ``clip`` with the tiny student (registered as size ``tiny``)."""
    from henshin.distill.config import DistillConfig

    values = dict(
        name=name,
        chain=TEACHER,
        sources=[clip],
        student="tiny",
        size=64,
        steps=200,
        batch=8,
        work_dir=work,
        max_pairs=60,
        progress=False,
    )
    values.update(changes)
    return DistillConfig(**values)
