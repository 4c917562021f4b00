"""ONNX export of a network's torch module, cached, and the parity check against eager torch."""

from __future__ import annotations

import io
import logging
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from henshin.errors import ModelError, RuntimeUnavailableError
from henshin.outputs import write_atomic
from henshin.runtimes.cache import cache_dir, cache_key, read_cached, write_cached
from henshin.runtimes.options import NetworkSpec, Runtime, RuntimeOptions, module_of

log = logging.getLogger("henshin")

ONNX_OPSET = 17


def onnx_file(spec: NetworkSpec, options: RuntimeOptions, verify: bool = True, fresh: bool = False) -> Path:
    """The network as an ONNX file: the given one, or an export cached by weights and shapes.

    A cached export whose bytes match its record is also opened once by ONNX Runtime
    (``verify``) to be sure it loads; a caller that opens it anyway passes False and,
    if that fails, asks again with ``fresh`` for a new export.
    """
    if spec.onnx is not None:
        return Path(spec.onnx)
    if spec.module is None:
        raise ModelError(f"network {spec.key} has neither a torch module nor an ONNX file.")
    # A module that computes the same function with other operations says so with ``export_revision``.
    revision = getattr(spec.module, "export_revision", 0)
    parts = {"opset": ONNX_OPSET, **({"revision": revision} if revision else {})}
    path = cache_dir(options) / f"{spec.key}-{cache_key(spec, **parts)}.onnx"
    meta = {"network": spec.key, "opset": ONNX_OPSET, "inputs": spec.shape_key()}
    if not fresh and read_cached(path, meta) is not None and (not verify or _onnx_loads(path)):
        return path
    if path.exists():
        log.warning("cached ONNX graph %s is damaged or stale; exporting it again.", path)
        path.unlink()
    log.info("exporting %s to ONNX (once; cached in %s)", spec.key, path.parent)
    buffer = io.BytesIO()
    export_onnx(spec, buffer)
    write_cached(path, buffer.getvalue(), meta)
    return path



def export_onnx(spec: NetworkSpec, target: Path | io.BytesIO) -> None:
    """Export ``spec.module`` as ONNX (opset 17, batch axis dynamic, and height and width with ``free_size``)."""
    import torch

    module = module_of(spec).eval().float().cpu()
    args = tuple(_example(shape, spec.is_batched(i)) for i, (_, shape) in enumerate(spec.inputs))
    names = [name for name, _ in spec.inputs]
    free = {2: "height", 3: "width"} if spec.free_size else {}
    dynamic = {name: {0: "batch", **(free if len(shape) == 3 else {})}
               for i, (name, shape) in enumerate(spec.inputs) if spec.is_batched(i)}
    dynamic[spec.output] = {0: "batch", **free}
    buffer = io.BytesIO()
    try:
        with warnings.catch_warnings(), torch.inference_mode():
            warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
            torch.onnx.export(module, args, buffer, input_names=names, output_names=[spec.output],
                              dynamic_axes=dynamic, opset_version=ONNX_OPSET, dynamo=False)
    except (ImportError, torch.onnx.OnnxExporterError) as exc:
        if "onnx" not in str(exc).lower():
            raise
        raise RuntimeUnavailableError("exporting the network to ONNX needs the onnx package; install it with: "
                                      "pip install 'onnx>=1.16,<1.18', or use --runtime torch.") from None
    if isinstance(target, io.BytesIO):
        target.write(buffer.getvalue())
        return
    write_atomic(Path(target), buffer.getvalue())


def _example(shape: tuple[int, ...], batched: bool) -> Any:
    import torch

    return torch.rand((2, *shape) if batched else shape)


def _onnx_loads(path: Path) -> bool:
    try:
        import onnxruntime as ort

        ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return True
    except Exception:
        return False


def parity(spec: NetworkSpec, runtime: Runtime, batch: int = 2, seed: int = 0) -> float:
    """Max abs difference between ``runtime`` and the eager fp32 torch module on random inputs."""
    import torch

    rng = np.random.default_rng(seed)
    inputs = [rng.random((batch, *shape) if spec.is_batched(i) else shape, dtype=np.float32)
              for i, (_, shape) in enumerate(spec.inputs)]
    with torch.inference_mode():
        want = module_of(spec).eval().float().cpu()(*[torch.from_numpy(x) for x in inputs]).numpy()
    got = runtime(*inputs)
    got = got.detach().float().cpu().numpy() if hasattr(got, "detach") else np.asarray(got, np.float32)
    return float(np.abs(got - want).max())


