"""The trained student out: an ONNX graph checked against torch, its weights and metadata, into the store."""

from __future__ import annotations

import io
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from henshin.distill.config import DistillConfig
from henshin.distill.teacher import Teacher
from henshin.distill.train import Trained
from henshin.errors import ModelError
from henshin.filters.student.model import META_FILE, ONNX_FILE, ONNX_KEY, WEIGHTS_FILE, StudentMeta
from henshin.models.store import store_student
from henshin.nets.student import SIZES, Student, student_state
from henshin.runtimes import ONNX_OPSET

PARITY = 1e-3  # largest |ONNX − torch| accepted, in [0, 1] pixel units


def student_meta(
    config: DistillConfig, teacher: Teacher, trained: Trained, pairs: int
) -> StudentMeta:
    """What the stored student records about itself and its teacher."""
    return StudentMeta(
        size=config.size,
        student=config.student,
        network=SIZES[config.student].to_json(),
        **teacher.framing(),
        teacher={"chain": config.chain, "params": teacher.params},
        steps=trained.steps,
        seconds=round(trained.seconds, 1),
        pairs=pairs,
        held_out_psnr=round(trained.psnr, 2),
        held_out_ssim=round(trained.ssim, 4),
        held_out=trained.held_out,
        notes=list(teacher.notes),
    )


def onnx_bytes(model: Student, size: int, meta: StudentMeta) -> bytes:
    """The student as an ONNX graph (batch free, ``size``² crops) with its metadata inside."""
    import onnx

    model = model.eval().float().cpu()
    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.inference_mode():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        torch.onnx.export(
            model,
            (torch.rand(1, 3, size, size),),
            buffer,
            input_names=["image"],
            output_names=["output"],
            dynamic_axes={"image": {0: "batch"}, "output": {0: "batch"}},
            opset_version=ONNX_OPSET,
            dynamo=False,
        )
    graph = onnx.load_from_string(buffer.getvalue())
    entry = graph.metadata_props.add()
    entry.key, entry.value = ONNX_KEY, meta.to_json()
    return graph.SerializeToString()


def onnx_parity(model: Student, graph: bytes, size: int, seed: int = 0) -> float:
    """Largest |ONNX Runtime − torch| on seeded random crops."""
    import onnxruntime as ort

    x = np.random.default_rng(seed).random((2, 3, size, size), dtype=np.float32)
    session = ort.InferenceSession(graph, providers=["CPUExecutionProvider"])
    got = session.run(None, {"image": x})[0]
    with torch.inference_mode():
        want = model.eval().float().cpu()(torch.from_numpy(x)).numpy()
    return float(np.abs(got - want).max())


def weights_bytes(model: Student, meta: StudentMeta) -> bytes:
    """The torch weights as safetensors (the metadata in its header too)."""
    from safetensors.torch import save

    return save(student_state(model), metadata={ONNX_KEY: meta.to_json()})


def export_student(
    config: DistillConfig,
    teacher: Teacher,
    trained: Trained,
    pairs: int,
    say: Callable[[str], None] = print,
) -> Path:
    """Store the student as model ``config.name``; returns its folder."""
    meta = student_meta(config, teacher, trained, pairs)
    model = trained.model.eval().float().cpu()
    graph = onnx_bytes(model, config.size, meta)
    error = onnx_parity(model, graph, config.size)
    if error > PARITY:
        raise ModelError(
            f"the student's ONNX graph differs from its torch weights by {error:.2g} (more than "
            f"{PARITY:g}); it was not stored."
        )
    title = f"student of {config.chain} ({config.student}, {config.size} px)"
    files = {
        ONNX_FILE: graph,
        WEIGHTS_FILE: weights_bytes(model, meta),
        META_FILE: meta.to_json().encode(),
    }
    return store_student(config.name, files, title, overwrite=config.overwrite, say=say)
