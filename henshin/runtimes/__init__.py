"""How a filter's network executes: torch, ONNX Runtime (with its execution providers) or OpenVINO, behind one interface.

Filters describe a network (a torch module or an ONNX file and its input shapes)
and call ``build``; what they get back is called the same way whatever runs it.
"""

from henshin.runtimes.build import build, build_runtime, describe, runtime_choice
from henshin.runtimes.cache import (
    cache_dir,
    cache_key,
    read_cached,
    weights_hash,
    write_cached,
)
from henshin.runtimes.export import ONNX_OPSET, export_onnx, onnx_file, parity
from henshin.runtimes.onnx_runtime import OnnxRuntime
from henshin.runtimes.openvino_runtime import OpenVinoRuntime
from henshin.runtimes.options import (
    RUNTIMES,
    LazyModule,
    NetworkSpec,
    Runtime,
    RuntimeOptions,
    check_available,
    choose_runtime,
    cuda_available,
    has_module,
    onnxruntime_providers,
)
from henshin.runtimes.providers import (
    PROVIDER_NAMES,
    PROVIDERS,
    Offer,
    Survey,
    choose_provider,
    survey,
)
from henshin.runtimes.torch_runtime import TorchRuntime

__all__ = [
    "ONNX_OPSET", "PROVIDERS", "PROVIDER_NAMES", "RUNTIMES", "LazyModule", "NetworkSpec", "Offer", "OnnxRuntime", "OpenVinoRuntime",
    "Runtime", "RuntimeOptions", "Survey", "TorchRuntime",
    "build", "build_runtime", "cache_dir", "cache_key", "check_available", "choose_provider", "choose_runtime",
    "cuda_available", "describe", "survey",
    "export_onnx", "has_module", "onnx_file", "onnxruntime_providers", "parity", "read_cached", "runtime_choice",
    "weights_hash", "write_cached",
]
