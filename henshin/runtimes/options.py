"""How a network is run: the options, the spec, and the choice of runtime.

Every runtime is built from the same description (a torch module or an ONNX
file, the per-sample input shapes, a device and a precision) and is called the
same way: positional arrays or tensors with a leading batch axis in, one array
or tensor out, of the same kind as the first input. ``auto`` picks TensorRT when
it is installed and a GPU is present, then torch on CUDA, then ONNX Runtime on
the CPU.
"""

from __future__ import annotations

import importlib.util
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

from henshin.errors import OptionError, RuntimeUnavailableError

log = logging.getLogger("henshin")

RuntimeName = Literal["auto", "torch", "onnxruntime", "tensorrt"]
RUNTIMES = ("auto", "torch", "onnxruntime", "tensorrt")
Precision = Literal["fp32", "fp16", "bf16"]


class Runtime(Protocol):
    """A compiled network: batched inputs in, one batched output out."""

    name: str

    def __call__(self, *inputs: Any) -> Any: ...

    def accepts(self, sample: tuple[int, ...]) -> bool:
        """Whether it runs first inputs of this per-sample shape (C, H, W), not only the one it was built for."""
        ...


@dataclass(frozen=True)
class NetworkSpec:
    """What a runtime needs to know about a network.

    module: the torch module (None for an ONNX-only network); onnx: a ready ONNX
    file (exported from ``module`` into the cache when None); inputs: name and
    per-sample shape of each input, batch axis excluded, None for an input that
    has no batch axis (a style-weight vector); batched: which inputs carry the
    batch axis; key: a short name for logs and cache files; free_size: the
    network takes any height and width (a fully convolutional net), so an export
    leaves them free and one graph serves every size.
    """

    key: str
    inputs: tuple[tuple[str, tuple[int, ...]], ...]
    module: Any = None
    onnx: Path | None = None
    batched: tuple[bool, ...] = ()
    output: str = "output"
    free_size: bool = False

    def is_batched(self, i: int) -> bool:
        return self.batched[i] if self.batched else True

    def shape_key(self) -> tuple[tuple[str, tuple[int | None, ...]], ...]:
        """The input shapes an artefact depends on: with ``free_size``, image heights and widths are left out."""
        if not self.free_size:
            return self.inputs
        return tuple((name, (shape[0], None, None) if len(shape) == 3 else shape) for name, shape in self.inputs)


@dataclass
class RuntimeOptions:
    """How to run: which runtime, where, at what precision."""

    runtime: RuntimeName = "auto"
    device: str | None = None  # "cpu", "cuda", "cuda:1"; None: the runtime's best
    precision: Precision | None = None  # None: fp16 on CUDA, fp32 on the CPU
    max_batch: int = 8
    compile: bool = False  # torch.compile
    cuda_graphs: bool = False
    threads: int = 0  # ONNX Runtime CPU threads (0: all cores)
    cache_dir: Path | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.runtime not in RUNTIMES:
            raise OptionError(f"--runtime expects one of {', '.join(RUNTIMES)}, got {self.runtime!r}.")
        if self.precision not in (None, "fp32", "fp16", "bf16"):
            raise OptionError(f"--precision expects fp32, fp16 or bf16, got {self.precision!r}.")
        if self.max_batch < 1:
            raise OptionError(f"--max-batch expects a whole number of at least 1, got {self.max_batch}.")
        if (self.compile or self.cuda_graphs) and self.runtime in ("onnxruntime", "tensorrt"):
            flag = "--compile" if self.compile else "--cuda-graphs"
            raise OptionError(f"{flag} applies to the torch runtime; drop it or use --runtime torch.")


# -- what is available ------------------------------------------------------------


def has_module(name: str) -> bool:
    """True when ``name`` can be imported (without importing it)."""
    return importlib.util.find_spec(name) is not None


def cuda_available() -> bool:
    """True when torch is installed and sees a CUDA device."""
    if not has_module("torch"):
        return False
    import torch

    return bool(torch.cuda.is_available())


def onnxruntime_providers() -> list[str]:
    """ONNX Runtime's execution providers in this installation."""
    import onnxruntime as ort

    return list(ort.get_available_providers())


def choose_runtime(requested: RuntimeName, has_torch_module: bool, *, tensorrt: bool | None = None,
                   cuda: bool | None = None) -> str:
    """Resolve ``auto`` (and check an explicit choice) for one network.

    A network with no torch module (ONNX-only) can run under ONNX Runtime or TensorRT.
    """
    if requested not in RUNTIMES:
        raise OptionError(f"--runtime expects one of {', '.join(RUNTIMES)}, got {requested!r}.")
    tensorrt = has_module("tensorrt") if tensorrt is None else tensorrt
    cuda = cuda_available() if cuda is None else cuda
    if requested == "auto":
        if tensorrt and cuda:
            return "tensorrt"
        if cuda and has_torch_module:
            return "torch"
        return "onnxruntime"
    if requested == "tensorrt":
        if not tensorrt:
            raise RuntimeUnavailableError("TensorRT is not installed; install it with: pip install 'henshin[tensorrt]'.")
        if not cuda:
            raise RuntimeUnavailableError("TensorRT needs a CUDA GPU and torch with CUDA, and none was found; use --runtime onnxruntime.")
    if requested == "torch":
        if not has_module("torch"):
            raise RuntimeUnavailableError("torch is not installed; install it with: pip install 'henshin[torch]'.")
        if not has_torch_module:
            raise OptionError("this filter's network is an ONNX graph only; use --runtime onnxruntime or tensorrt.")
    return requested
