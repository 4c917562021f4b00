"""How a filter's network executes: torch, ONNX Runtime or TensorRT, behind one interface.

Filters describe a network (a torch module or an ONNX file and its input shapes)
and call ``build``; what they get back is called the same way whatever runs it.
"""

from henshin.runtimes.build import build, build_runtime, describe
from henshin.runtimes.cache import (
    cache_dir,
    cache_key,
    read_cached,
    weights_hash,
    write_cached,
)
from henshin.runtimes.export import ONNX_OPSET, export_onnx, onnx_file, parity
from henshin.runtimes.onnx_runtime import OnnxRuntime
from henshin.runtimes.options import (
    RUNTIMES,
    NetworkSpec,
    Runtime,
    RuntimeOptions,
    choose_runtime,
    cuda_available,
    has_module,
    onnxruntime_providers,
)
from henshin.runtimes.torch_runtime import TorchRuntime

__all__ = [
    "ONNX_OPSET", "RUNTIMES", "NetworkSpec", "OnnxRuntime", "Runtime", "RuntimeOptions", "TorchRuntime",
    "build", "build_runtime", "cache_dir", "cache_key", "choose_runtime", "cuda_available", "describe",
    "export_onnx", "has_module", "onnx_file", "onnxruntime_providers", "parity", "read_cached",
    "weights_hash", "write_cached",
]
