"""OpenVINO's own runtime on a network's ONNX export: the CPU (Intel GPUs and NPUs where present, untested).

The compiled model is exported (``CompiledModel.export_model``) into henshin's
compiled cache under a key of the network's weights, shapes, precision, device and
OpenVINO version, and imported on the next run instead of being compiled again;
a blob that does not match its record is rebuilt, never used.
"""

from __future__ import annotations

import io
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from henshin.errors import ModelError, OptionError, RuntimeUnavailableError
from henshin.runtimes.cache import cache_dir, cache_key, read_cached, write_cached
from henshin.runtimes.options import NetworkSpec, RuntimeOptions

log = logging.getLogger("henshin")

# --precision -> OpenVINO's inference precision hint. fp32 is asked for explicitly: on CPUs with
# AMX or AVX-512 BF16 OpenVINO otherwise runs bf16 by default.
HINTS = {"fp32": "f32", "fp16": "f16", "bf16": "bf16"}


def _core() -> Any:
    try:
        import openvino as ov
    except ImportError:
        raise RuntimeUnavailableError(
            "OpenVINO is not installed; install it with: pip install 'henshin[openvino]'."
        ) from None
    return ov.Core()


def openvino_devices() -> list[str]:
    """OpenVINO's devices on this machine with their names ("CPU (Intel Core ...)"); empty without OpenVINO."""
    try:
        core = _core()
    except RuntimeUnavailableError:
        return []
    return [f"{d} ({core.get_property(d, 'FULL_DEVICE_NAME')})" for d in core.available_devices]


def openvino_device(device: str | None, precision: str | None) -> tuple[str, str]:
    """OpenVINO's (device, precision) for ``--device`` and ``--precision``, or one sentence if this machine lacks them.

    No ``--device``: an Intel GPU where OpenVINO sees one, else the CPU.
    """
    core = _core()
    have = list(core.available_devices)
    name = device.upper() if device else ("GPU" if "GPU" in have else "CPU")
    if name not in have:
        raise RuntimeUnavailableError(
            f"--device {device}: OpenVINO sees no such device here (it has "
            f"{', '.join(d.lower() for d in have)}); pick one of them."
        )
    precision = precision or "fp32"
    if precision == "fp32":
        return name, precision
    caps = core.get_property(name, "OPTIMIZATION_CAPABILITIES")
    if precision.upper() not in caps:
        raise OptionError(
            f"--precision {precision}: OpenVINO's {name} here runs {', '.join(c for c in caps if c.startswith(('FP', 'BF')))} "
            f"only; use --precision fp32."
        )
    return name, precision


def blob_key(spec: NetworkSpec, device: str, precision: str, version: str, full_name: str) -> str:
    """What a compiled OpenVINO model depends on, as a short hash."""
    return cache_key(
        spec,
        runtime="openvino",
        device=device,
        device_name=full_name,
        precision=precision,
        openvino=version,
    )


class OpenVinoRuntime:
    """A network's ONNX export compiled by OpenVINO (or imported from the cache), run on its device."""

    name = "openvino"

    def __init__(self, spec: NetworkSpec, options: RuntimeOptions, path: Path) -> None:
        import openvino as ov

        self.spec = spec
        self.device, self.precision = openvino_device(options.device, options.precision)
        core = _core()
        self.threads = options.threads or os.cpu_count() or 1
        config = {"INFERENCE_PRECISION_HINT": HINTS[self.precision], "PERFORMANCE_HINT": "LATENCY"}
        if self.device == "CPU":
            config["INFERENCE_NUM_THREADS"] = self.threads
        full_name = str(core.get_property(self.device, "FULL_DEVICE_NAME"))
        key = blob_key(spec, self.device, self.precision, ov.get_version(), full_name)
        self.blob_path = cache_dir(options) / f"{spec.key}-{key}.openvino"
        meta = {
            "network": spec.key,
            "device": full_name,
            "precision": self.precision,
            "openvino": ov.get_version(),
        }
        self.compiled, self.from_cache = self._load(core, self.blob_path, meta, config), True
        if self.compiled is None:
            self.from_cache = False
            self.compiled = self._compile(core, path, config)
            buffer = io.BytesIO()
            self.compiled.export_model(buffer)
            write_cached(self.blob_path, buffer.getvalue(), meta)
        self.request = self.compiled.create_infer_request()
        first = self.compiled.inputs[0].get_partial_shape()
        self.fixed_batch = first[0].get_length() if first[0].is_static else None
        self._sample_dims = [d.get_length() if d.is_static else None for d in list(first)[1:]]

    def _load(self, core: Any, blob: Path, meta: dict[str, Any], config: dict[str, Any]) -> Any:
        data = read_cached(blob, meta)
        if data is None:
            return None
        try:
            return core.import_model(io.BytesIO(data), self.device, config)
        except Exception:  # noqa: BLE001 - a blob from another build: compiled again
            log.warning("cached OpenVINO model %s does not load; compiling it again.", blob.name)
            return None

    def _compile(self, core: Any, path: Path, config: dict[str, Any]) -> Any:
        log.info(
            "compiling %s with OpenVINO for %s %s (once; cached in %s)",
            self.spec.key,
            self.device,
            self.precision,
            self.blob_path.parent,
        )
        try:
            return core.compile_model(core.read_model(str(path)), self.device, config)
        except Exception as exc:  # noqa: BLE001 - OpenVINO raises RuntimeError subclasses of its own
            raise ModelError(
                f"OpenVINO cannot compile {path} ({str(exc).splitlines()[0]}); "
                "use --runtime onnxruntime."
            ) from None

    def accepts(self, sample: tuple[int, ...]) -> bool:
        return len(sample) == len(self._sample_dims) and all(
            d is None or d == n for d, n in zip(self._sample_dims, sample, strict=True)
        )

    def __call__(self, *inputs: Any) -> Any:
        torch_in = not isinstance(inputs[0], np.ndarray)
        arrays = [_to_numpy(x) for x in inputs]
        if self.fixed_batch == 1 and arrays[0].shape[0] != 1:
            outs = [
                self._run(
                    [a[i : i + 1] if self.spec.is_batched(j) else a for j, a in enumerate(arrays)]
                )
                for i in range(arrays[0].shape[0])
            ]
            out = np.concatenate(outs)
        else:
            out = self._run(arrays)
        if torch_in:
            import torch

            return torch.from_numpy(out).to(inputs[0].device)
        return out

    def _run(self, arrays: list[np.ndarray]) -> np.ndarray:
        # A copy: the request's output buffer is reused by the next call.
        return np.array(self.request.infer(arrays)[0], dtype=np.float32, copy=True)


def _to_numpy(x: Any) -> np.ndarray:
    if isinstance(x, np.ndarray):
        return np.ascontiguousarray(x, dtype=np.float32)
    return x.detach().float().cpu().numpy()
