"""``--filter student --param model=NAME``: a student made by ``henshin distill``, live on the CPU.

It runs through the runtimes (ONNX Runtime or OpenVINO on the CPU, fp32 or ``--precision
int8``; torch, or TensorRT, on a GPU) with its teacher's crop framing and mask mode, read
from the student's metadata.
``strength`` mixes it with the original face in the frame, ``temporal`` blends each
output with the previous one along the input's optical flow, as for ``style``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from henshin.digest import sha256_file
from henshin.errors import OptionError
from henshin.filters.base import Filter, check_range, register
from henshin.filters.networks import calibration_faces, placement, runtime_options
from henshin.filters.student.model import WEIGHTS_FILE, StudentMeta, read_student
from henshin.kernels.masks import is_torch
from henshin.runtimes import build, cuda_available, has_module
from henshin.types import FaceContext, FilterSpec


@dataclass(frozen=True)
class StudentParams:
    """model: the student's name (``henshin models list``) or the path of its folder or .onnx file;
    strength: 0 keeps the input, 1 is the student's full effect; temporal: 0..1, how much of the
    previous output, warped by the input's optical flow, is blended into each output (0: off);
    threads: ONNX Runtime threads (0: all cores); size: the crop side it expects (0: its own)."""

    model: str = ""
    strength: float = 1.0
    temporal: float = 0.0
    threads: int = 0
    size: int = 0

    def __post_init__(self) -> None:
        if not self.model:
            raise OptionError(
                "the student filter needs a model: give --param model=NAME with a name from "
                "`henshin models list` (made by `henshin distill`)."
            )
        check_range("strength", self.strength, 0.0, 1.0)
        check_range("temporal", self.temporal, 0.0, 1.0)
        check_range("threads", self.threads, 0, 256)
        check_range("size", self.size, 0, 4096)


def _is_path(model: str) -> bool:
    return "/" in model or "\\" in model or Path(model).expanduser().exists()


@register
class StudentFilter(Filter):
    """A distilled student of a slow filter chain (made by `henshin distill`)."""

    name = "student"
    Params = StudentParams

    @classmethod
    def required_models(cls, params: StudentParams) -> tuple[str, ...]:
        return () if _is_path(params.model) else (params.model,)

    def __init__(self, params: StudentParams, runtime: Any = None, weights: Any = None) -> None:
        super().__init__(params, runtime, weights)
        location = (
            Path(params.model).expanduser()
            if _is_path(params.model)
            else self.weights_file(params.model)
        )
        self.meta, self._onnx = read_student(location, params.model)
        if params.size and params.size != self.meta.size:
            raise OptionError(
                f"student {params.model} was trained on {self.meta.size}-pixel crops, not "
                f"{params.size}; drop --param size, or distil another with --size {params.size}."
            )
        module = self._torch_module()
        self._array, self._device = placement(runtime, has_torch_module=module is not None)
        options = runtime_options(runtime)
        if params.threads:
            options = dataclasses.replace(options, threads=params.threads)
        size = self.meta.size
        self._net = build(
            options,
            f"student-{sha256_file(self._onnx)[:12]}",
            [("image", (3, size, size))],
            module=module,
            onnx=self._onnx,
            batched=(True,),
            calibration=self._calibration,
        )

    def _calibration(self) -> list[tuple[np.ndarray]]:
        """Face crops in the student's size and value range, for ``--precision int8``."""
        low, high = self.meta.value_range
        size = self.meta.size
        return [(crop * (high - low) + low,) for crop in calibration_faces(size, size)]

    def _torch_module(self) -> Any:
        """The torch student on a GPU (torch or TensorRT take it there); None on the CPU: the stored graph runs."""
        weights = self._onnx.with_name(WEIGHTS_FILE)
        if not (cuda_available() and has_module("torch") and weights.is_file()):
            return None
        from henshin.nets.student import StudentConfig, load_student

        return load_student(weights, StudentConfig.from_json(self.meta.network))

    @property
    def spec(self) -> FilterSpec:
        m: StudentMeta = self.meta
        return FilterSpec(
            consumes="crops",
            size=m.size,
            value_range=tuple(m.value_range),
            array=self._array,
            device=self._device,
            devices=("cpu", "cuda"),
            mask=m.mask,
            border=m.border,
            crop=m.crop,
            box_scale=m.box_scale,
            temporal_blend=self.params.temporal,
        )

    @property
    def opacity(self) -> float:
        return self.params.strength

    def set_params(self, **changes: str) -> None:
        if "model" in changes or "size" in changes:
            raise OptionError(
                "the student's model and size are chosen when it starts; switch the filter instead."
            )
        super().set_params(**changes)

    def process(self, batch: Any, faces: Sequence[FaceContext]) -> Any:
        out = self._net(batch)
        return (
            out.clamp(0.0, 1.0)
            if is_torch(out)
            else np.clip(out, 0.0, 1.0, out=np.asarray(out, np.float32))
        )
