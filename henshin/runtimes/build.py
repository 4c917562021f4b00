"""Building a runtime: ``auto`` resolved (runtime and provider), the artefacts made or found in the cache, the choice printed once."""

from __future__ import annotations

import dataclasses
import functools
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from henshin.errors import ModelError, OptionError
from henshin.runtimes.export import onnx_file
from henshin.runtimes.onnx_runtime import OnnxRuntime
from henshin.runtimes.options import (
    INT8_REFUSED,
    NetworkSpec,
    Runtime,
    RuntimeOptions,
    choose_runtime,
    has_module,
)
from henshin.runtimes.providers import offer_for, survey
from henshin.runtimes.quantize import int8_file
from henshin.runtimes.torch_runtime import TorchRuntime

log = logging.getLogger("henshin")


def build(options: RuntimeOptions | None, key: str, inputs: Sequence[tuple[str, tuple[int, ...]]], *,
          module: Any = None, onnx: Path | None = None, batched: Sequence[bool] = (),
          free_size: bool = False, calibration: Any = None, int8_fp32: Sequence[str] = ()) -> Runtime:
    """Build a runtime for one network from its parts (``options`` None: the defaults, ``auto``)."""
    spec = NetworkSpec(key=key, inputs=tuple((n, tuple(s)) for n, s in inputs), module=module,
                       onnx=onnx, batched=tuple(batched), free_size=free_size, calibration=calibration,
                       int8_fp32=tuple(int8_fp32))
    return build_runtime(spec, options or RuntimeOptions())


def build_runtime(spec: NetworkSpec, options: RuntimeOptions) -> Runtime:
    """Build the runtime ``options`` ask for (``auto`` resolved), ready to call."""
    name, offer, options = runtime_choice(options, spec.module is not None)
    options = resolve_precision(options, name, offer)
    if options.precision == "int8" and name not in ("onnxruntime", "openvino"):
        raise OptionError(INT8_REFUSED)
    if name == "torch":
        runtime: Runtime = TorchRuntime(spec, options)
    elif name == "openvino":
        from henshin.runtimes.openvino_runtime import OpenVinoRuntime

        path = onnx_file(spec, options)
        if options.precision == "int8":
            int8 = int8_file(spec, options, path, "openvino")
            runtime = OpenVinoRuntime(spec, options, int8 or path, "int8" if int8 else "fp32")
        else:
            runtime = OpenVinoRuntime(spec, options, path)
    else:  # onnxruntime, or tensorrt: ONNX Runtime with a TensorRT provider
        runtime = _onnx_runtime(spec, options, offer)
    _announce(f"runtime for {spec.key}: {describe(runtime)}"
              + (" (chosen by auto)" if options.runtime == "auto" else ""))
    return runtime


def runtime_choice(options: RuntimeOptions, has_torch_module: bool, note: bool = True) -> tuple[str, Any, RuntimeOptions]:
    """The runtime a network runs on (``auto`` resolved), ONNX Runtime's offer where it runs there, and
    the options to build it with; ``note``: print ``auto``'s choice of ONNX Runtime provider."""
    name = choose_runtime(options.runtime, has_torch_module)
    if name not in ("onnxruntime", "tensorrt"):
        return name, None, options
    offer = offer_for(name, options.provider, options.device, survey(), note=False)
    if options.runtime == "auto" and name == "onnxruntime" and offer.provider == "cpu" and _openvino_takes_cpu(options):
        return "openvino", None, dataclasses.replace(options, device="cpu")
    if note:
        offer = offer_for(name, options.provider, options.device, survey())  # the same, now printed
    return name, offer, options


def _openvino_takes_cpu(options: RuntimeOptions) -> bool:
    """Whether ``auto`` runs a network that would go to ONNX Runtime's CPU provider on OpenVINO's CPU
    runtime instead: where OpenVINO is installed and works, for the precisions both run (fp16 and
    bf16 asked for stay with ONNX Runtime). Compiled for fixed shapes, OpenVINO ran every network
    henshin has faster on this machine's CPU (1.04-1.6x; docs/runtimes.md)."""
    return options.precision in (None, "fp32", "int8", "auto") and _openvino_cpu()


@functools.lru_cache(maxsize=1)
def _openvino_cpu() -> bool:
    """OpenVINO imports and offers the CPU (asked once a process)."""
    if not has_module("openvino"):
        return False
    from henshin.runtimes.openvino_devices import openvino_devices

    try:
        return any(d.startswith("CPU ") for d in openvino_devices())
    except Exception:  # noqa: BLE001 - a broken install: ONNX Runtime runs instead
        return False


def resolve_precision(options: RuntimeOptions, runtime: str, offer: Any = None) -> RuntimeOptions:
    """``--precision auto`` made definite for the runtime chosen: int8 where the network runs on a CPU
    through ONNX Runtime's CPU provider or OpenVINO (its check keeps it only where it is faster and
    within 35 dB, else fp32 runs), otherwise the default (fp16 on CUDA, fp32 on the CPU)."""
    if options.precision != "auto":
        return options
    on_cpu = False
    if runtime == "onnxruntime":
        on_cpu = offer is not None and offer.provider == "cpu"
    elif runtime == "openvino":
        from henshin.runtimes.openvino_devices import openvino_device

        on_cpu = openvino_device(options.device, None)[0] == "CPU"
    return dataclasses.replace(options, precision="int8" if on_cpu else None)


def _onnx_runtime(spec: NetworkSpec, options: RuntimeOptions, offer: Any) -> OnnxRuntime:
    """ONNX Runtime on the network's graph; a cached export that will not open is exported afresh, once.

    The session opened here is the cached export's load check (a second session only to check
    it cost 80 ms of every conversion's start).
    """
    path = onnx_file(spec, options, verify=False)
    int8 = int8_file(spec, options, path) if options.precision == "int8" else None
    try:
        runtime = OnnxRuntime(spec, options, int8 or path, offer)
    except ModelError:
        if spec.onnx is not None or int8 is not None:
            raise
        log.warning("cached ONNX graph %s does not open; exporting it again.", path)
        path = onnx_file(spec, options, fresh=True)
        runtime = OnnxRuntime(spec, options, path, offer)
    runtime.precision = "int8" if int8 is not None else "fp32"
    return runtime


_ANNOUNCED: set[str] = set()


def _announce(message: str) -> None:
    """Log a line once per process (the runtime choice is printed once at start)."""
    if message not in _ANNOUNCED:
        _ANNOUNCED.add(message)
        log.info("%s", message)


def describe(runtime: Runtime) -> str:
    """One line: the runtime, its device and precision."""
    if isinstance(runtime, OnnxRuntime):
        return (f"onnxruntime ({runtime.provider} provider on {runtime.offer.device}; session providers "
                f"{', '.join(p.removesuffix('ExecutionProvider') for p in runtime.providers)}, {runtime.threads} threads{', int8' if runtime.precision == 'int8' else ''})")
    if runtime.name == "openvino":
        return f"openvino ({runtime.device}, {runtime.precision}, {runtime.threads} threads)"
    device = getattr(runtime, "device", "?")
    return f"{runtime.name} ({device}, {getattr(runtime, 'precision', 'fp32')})"


