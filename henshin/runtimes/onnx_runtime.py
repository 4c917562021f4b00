"""The ONNX Runtime runtime: the execution provider ``--provider`` (or ``auto``) picks, with its options.

Plugin providers run through the device they offer (``add_provider_for_devices``),
classic ones by name; nodes a provider does not take run on the CPU provider. The
engine and compile caches of the providers that keep one (TensorRT, TensorRT-RTX,
OpenVINO, CoreML) live in a folder of henshin's compiled cache keyed like every
other artefact; a folder for other weights or settings is removed when a new one
is made.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from henshin.errors import ModelError
from henshin.runtimes.batching import run_graph
from henshin.runtimes.cache import provider_cache
from henshin.runtimes.options import NetworkSpec, RuntimeOptions
from henshin.runtimes.providers import PROVIDERS, Offer, offer_for, plugin_module, survey


class OnnxRuntime:
    """ONNX Runtime with one execution provider (the CPU provider for whatever it does not take)."""

    name = "onnxruntime"

    def __init__(self, spec: NetworkSpec, options: RuntimeOptions, path: Path, offer: Offer | None = None) -> None:
        import onnxruntime as ort

        self.spec, self.path = spec, path
        self.offer = offer or offer_for(options.runtime, options.provider, options.device, survey())
        self.provider = self.offer.provider
        self.precision = "fp32"  # "int8" when the graph is the quantized one (see ``quantize``)
        so = ort.SessionOptions()
        so.log_severity_level = 3
        self.threads = options.threads or os.cpu_count() or 1
        so.intra_op_num_threads = self.threads
        # The pipeline's other stages (decode, landmarks, encode) share these cores: threads that
        # spin-wait between runs would take their time (720p default filter on 2 cores: 13.4 -> 17.2 fps).
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        settings = provider_options(spec, options, self.offer)
        providers: list[Any] | None = ["CPUExecutionProvider"]
        if self.provider != "cpu" and self.offer.ep_device is not None:
            so.add_provider_for_devices([self.offer.ep_device], settings)  # a plugin: through its device
            providers = None
        elif self.provider != "cpu":
            providers = [(PROVIDERS[self.provider].ep, settings), "CPUExecutionProvider"]
        try:
            self.session = ort.InferenceSession(str(path), so, providers=providers)
        except Exception as exc:
            raise ModelError(f"{path} is not a usable ONNX graph ({str(exc).splitlines()[0]}); delete it and run again.") from None
        self.providers = self.session.get_providers()
        self._names = [i.name for i in self.session.get_inputs()]
        first = self.session.get_inputs()[0].shape
        self.fixed_batch = first[0] if isinstance(first[0], int) else None
        self._sample_dims = first[1:]  # ints where the graph fixes a size, names or None where it is free

    def accepts(self, sample: tuple[int, ...]) -> bool:
        return len(sample) == len(self._sample_dims) and all(
            not isinstance(d, int) or d == n for d, n in zip(self._sample_dims, sample, strict=True))

    def __call__(self, *inputs: Any) -> Any:
        return run_graph(self._run, self.spec, self.fixed_batch, inputs)

    def _run(self, arrays: Sequence[np.ndarray]) -> np.ndarray:
        return self.session.run(None, dict(zip(self._names, arrays, strict=True)))[0]


def provider_options(spec: NetworkSpec, options: RuntimeOptions, offer: Offer) -> dict[str, str]:
    """The provider's options for this network: device id, fp16, its engine cache, the batch profile.

    Only the CPU provider has run here; the others are written from their documentation (untested).
    """
    name = offer.provider
    device_id = (options.device or "").partition(":")[2] or "0"
    half = options.precision == "fp16" or (options.precision is None and name == "tensorrt")
    if name in ("cuda", "directml", "rocm"):
        return {"device_id": device_id}
    if name == "migraphx":
        return {"device_id": device_id, "migraphx_fp16_enable": str(int(half))}
    if name not in ("tensorrt", "tensorrt-rtx", "openvino", "coreml"):
        return {}
    folder = str(_cache(spec, options, offer, half))  # made only for the providers that keep a cache
    if name == "tensorrt":
        return {"device_id": device_id, "trt_fp16_enable": str(half), "trt_engine_cache_enable": "True",
                "trt_engine_cache_path": folder, "trt_timing_cache_enable": "True",
                "trt_timing_cache_path": folder, **_profiles("trt_profile", spec, options.max_batch)}
    if name == "tensorrt-rtx":  # builds from the graph's own types (fp32 exports): no fp16 switch
        return {"device_id": device_id, "nv_runtime_cache_path": folder,
                **_profiles("nv_profile", spec, options.max_batch)}
    if name == "openvino":
        return {"device_type": offer.device, "precision": "FP16" if half else "FP32", "cache_dir": folder}
    return {"ModelFormat": "MLProgram", "MLComputeUnits": "ALL", "ModelCacheDirectory": folder}


def _cache(spec: NetworkSpec, options: RuntimeOptions, offer: Offer, half: bool) -> Path:
    import onnxruntime as ort

    plugin = plugin_module(PROVIDERS[offer.provider])
    return provider_cache(spec, options, offer.provider, device=options.device, vendor=offer.vendor,
                          device_type=offer.device, half=half, max_batch=options.max_batch, shapes=spec.inputs,
                          onnxruntime=ort.__version__, plugin=getattr(plugin, "__version__", ""))


def _profiles(prefix: str, spec: NetworkSpec, max_batch: int) -> dict[str, str]:
    """TensorRT's batch profile for every batched input: 1, min(4, max) and ``max_batch``."""
    def shapes(batch: int) -> str:
        return ",".join(f"{name}:{'x'.join(map(str, (batch, *shape) if spec.is_batched(i) else shape))}"
                        for i, (name, shape) in enumerate(spec.inputs))

    return {f"{prefix}_min_shapes": shapes(1), f"{prefix}_opt_shapes": shapes(min(4, max_batch)),
            f"{prefix}_max_shapes": shapes(max_batch)}
