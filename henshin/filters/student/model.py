"""A stored student: its files, its metadata, and reading them with one-sentence refusals.

A student model (``henshin distill`` makes them) is three files in the user's model
cache: ``student.onnx`` (the graph the filter runs; the metadata is also inside it, in the
ONNX model's ``metadata_props``), ``student.safetensors`` (the torch weights, for resuming,
fine-tuning or the torch runtime) and ``student.json`` (the metadata: teacher chain and
parameters, crop framing, mask mode, size, value range, student size, steps, time and
the held-out PSNR/SSIM against the teacher).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from henshin.errors import InputNotFoundError, ModelError

KIND = "henshin-student"
VERSION = 1
ONNX_FILE, WEIGHTS_FILE, META_FILE = "student.onnx", "student.safetensors", "student.json"
ONNX_KEY = "henshin.student"  # the metadata_props key of the ONNX graph


@dataclass(frozen=True)
class StudentMeta:
    """What a student records about itself; crops are (N, 3, size, size) float32 in ``value_range``."""

    size: int
    student: str
    network: dict[str, Any]
    crop: str = "aligned"
    box_scale: float = 1.3
    mask: str = "face"
    border: float = 0.1
    value_range: tuple[float, float] = (0.0, 1.0)
    teacher: dict[str, Any] = field(default_factory=dict)
    steps: int = 0
    seconds: float = 0.0
    pairs: int = 0
    held_out_psnr: float | None = None
    held_out_ssim: float | None = None
    held_out: bool = True
    notes: list[str] = field(default_factory=list)
    kind: str = KIND
    version: int = VERSION

    def to_json(self) -> str:
        """The metadata as JSON text."""
        return json.dumps({**asdict(self), "value_range": list(self.value_range)}, indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str, where: str) -> StudentMeta:
        """Parse metadata; anything but a henshin student's is refused naming ``where``."""
        try:
            data = json.loads(text)
            if not isinstance(data, dict) or data.get("kind") != KIND:
                raise ValueError
            data["value_range"] = tuple(data["value_range"])
            data["notes"] = list(data.get("notes", []))
            return cls(**data)
        except (ValueError, TypeError, KeyError):
            raise ModelError(
                f"{where} is not a henshin student (no student metadata in it); give a model "
                "that `henshin distill` made (see `henshin models list`)."
            ) from None


def read_student(location: Path, name: str = "") -> tuple[StudentMeta, Path]:
    """The metadata and ONNX graph of a student: its model folder, its ``student.json`` or its ``.onnx`` file."""
    location = Path(location).expanduser()
    shown = name or str(location)
    if not location.exists():
        raise InputNotFoundError(
            f"student {shown} does not exist; give a name from `henshin models list` "
            "or the path of a student's folder."
        )
    if location.is_dir():
        meta_file, onnx = location / META_FILE, location / ONNX_FILE
        if not meta_file.is_file() or not onnx.is_file():
            raise ModelError(
                f"{shown} is not a henshin student (it lacks {META_FILE} or {ONNX_FILE}); give a model "
                "that `henshin distill` made (see `henshin models list`)."
            )
        return StudentMeta.from_json(meta_file.read_text(encoding="utf-8"), shown), onnx
    if location.suffix.lower() == ".json":
        return StudentMeta.from_json(
            location.read_text(encoding="utf-8"), shown
        ), location.with_name(ONNX_FILE)
    return StudentMeta.from_json(_onnx_metadata(location, shown), shown), location


def _onnx_metadata(path: Path, shown: str) -> str:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    try:
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception:
        raise ModelError(
            f"{shown} is not a henshin student (it is not an ONNX graph); give a model that "
            "`henshin distill` made (see `henshin models list`)."
        ) from None
    return session.get_modelmeta().custom_metadata_map.get(ONNX_KEY, "")


def load_student_file(path: Path) -> Any:
    """The torch student of a stored student's folder, loaded strictly (``henshin models verify`` calls this
    with any of its three files)."""
    from henshin.nets.student import StudentConfig, load_student

    folder = Path(path).parent
    meta, _ = read_student(folder / META_FILE)
    weights = folder / WEIGHTS_FILE
    if Path(path).name.startswith(".") or Path(path).suffix == ".safetensors":
        weights = Path(path)  # the file being stored or checked
    return load_student(weights, StudentConfig.from_json(meta.network))
