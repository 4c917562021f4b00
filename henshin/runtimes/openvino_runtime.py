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

from henshin.errors import ModelError
from henshin.runtimes import openvino_devices as devices
from henshin.runtimes.batching import run_graph
from henshin.runtimes.cache import cache_dir, cache_key, read_cached, write_cached
from henshin.runtimes.options import NetworkSpec, RuntimeOptions

log = logging.getLogger("henshin")

# --precision -> OpenVINO's inference precision hint. fp32 is asked for explicitly: on CPUs with
# AMX or AVX-512 BF16 OpenVINO otherwise runs bf16 by default. int8 is the quantized (QDQ) graph,
# which OpenVINO runs in int8 where its Q/DQ pairs say so; the rest of it stays fp32.
HINTS = {"fp32": "f32", "fp16": "f16", "bf16": "bf16", "int8": "f32"}


def blob_key(
    spec: NetworkSpec, device: str, precision: str, version: str, full_name: str, graph: str = ""
) -> str:
    """What a compiled OpenVINO model depends on, as a short hash (``graph``: the int8 graph's file name,
    which carries its own key)."""
    return cache_key(
        spec,
        runtime="openvino",
        device=device,
        device_name=full_name,
        precision=precision,
        openvino=version,
        graph=graph,
    )


def compile_config(device: str, precision: str, threads: int) -> dict[str, Any]:
    """OpenVINO's compile settings: the precision hint, latency over throughput, the CPU's threads."""
    config: dict[str, Any] = {"INFERENCE_PRECISION_HINT": HINTS[precision], "PERFORMANCE_HINT": "LATENCY"}
    if device == "CPU":
        config["INFERENCE_NUM_THREADS"] = threads
    return config


class OpenVinoRuntime:
    """A network's ONNX export compiled by OpenVINO (or imported from the cache), run on its device."""

    name = "openvino"

    def __init__(
        self, spec: NetworkSpec, options: RuntimeOptions, path: Path, precision: str | None = None
    ) -> None:
        """``precision``: what ``path`` holds when it is not what was asked for (``fp32`` when the int8
        graph was not kept)."""
        self.spec = spec
        self.device, self.precision = devices.openvino_device(options.device, options.precision)
        self.precision = precision or self.precision
        core = devices.core()
        self.threads = options.threads or os.cpu_count() or 1
        config = compile_config(self.device, self.precision, self.threads)
        full_name = str(core.get_property(self.device, "FULL_DEVICE_NAME"))
        graph = Path(path).name if self.precision == "int8" else ""
        key = blob_key(spec, self.device, self.precision, devices.version(), full_name, graph)
        self.blob_path = cache_dir(options) / f"{spec.key}-{key}.openvino"
        meta = {
            "network": spec.key,
            "device": full_name,
            "precision": self.precision,
            "openvino": devices.version(),
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
        return run_graph(self._run, self.spec, self.fixed_batch, inputs)

    def _run(self, arrays: list[np.ndarray]) -> np.ndarray:
        # A copy: the request's output buffer is reused by the next call.
        return np.array(self.request.infer(arrays)[0], dtype=np.float32, copy=True)
