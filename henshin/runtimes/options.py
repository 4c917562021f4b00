"""How a network is run: the options, the spec, and the choice of runtime.

Every runtime is built from the same description (a torch module or an ONNX
file, the per-sample input shapes, a device and a precision) and is called the
same way: positional arrays or tensors with a leading batch axis in, one array
or tensor out, of the same kind as the first input. ``auto`` picks TensorRT (through
ONNX Runtime's TensorRT providers) where one offers a GPU, then torch on CUDA, then
ONNX Runtime with the first provider that offers a device (the CPU last).
"""

from __future__ import annotations

import functools
import importlib.util
import logging
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

from henshin.errors import OptionError, RuntimeUnavailableError
from henshin.runtimes.providers import HALF as HALF_PROVIDERS
from henshin.runtimes.providers import PROVIDER_NAMES, TENSORRT, Survey, offer_for, survey

log = logging.getLogger("henshin")

RuntimeName = Literal["auto", "torch", "onnxruntime", "tensorrt", "openvino"]
DEVICE = re.compile(r"cpu|cuda(:\d+)?|gpu(\.\d+)?|npu")
RUNTIMES = ("auto", "torch", "onnxruntime", "tensorrt", "openvino")
ONNX_RUNTIMES = ("onnxruntime", "tensorrt", "openvino")  # the runtimes that run an ONNX export
Precision = Literal["fp32", "fp16", "bf16", "int8", "auto"]
INT8_REFUSED = ("--precision int8 is ONNX Runtime's static quantization, run on the CPU by ONNX Runtime's CPU "
                "provider or by OpenVINO; use --runtime onnxruntime (or auto) with the CPU provider, or --runtime "
                "openvino, without --device cuda, or drop --precision int8.")


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
    leaves them free and one graph serves every size; calibration: a callable
    giving typical input tuples (face crops), for ``--precision int8``;
    int8_fp32: scopes of nodes that ``--precision int8`` keeps in fp32 (``"res.0.0"``
    matches the exported node ``/res.0.0/Conv``: the module path, which the
    exporter and the network's own ONNX graph name nodes by).
    """

    key: str
    inputs: tuple[tuple[str, tuple[int, ...]], ...]
    module: Any = None
    onnx: Path | None = None
    batched: tuple[bool, ...] = ()
    output: str = "output"
    free_size: bool = False
    calibration: Any = None
    int8_fp32: tuple[str, ...] = ()

    def is_batched(self, i: int) -> bool:
        return self.batched[i] if self.batched else True

    def shape_key(self) -> tuple[tuple[str, tuple[int | None, ...]], ...]:
        """The input shapes an artefact depends on: with ``free_size``, image heights and widths are left out."""
        if not self.free_size:
            return self.inputs
        return tuple((name, (shape[0], None, None) if len(shape) == 3 else shape) for name, shape in self.inputs)


class LazyModule:
    """A torch module made on first use, keyed without it: a cached export then runs without torch.

    ``load`` makes the module; ``key`` stands for its weights in cache keys (the hash of the file
    they are read from, say); ``export_revision`` as on a module. Importing torch alone took 2.1 s
    of a 5 s conversion's start on two cores, for a network whose export was already cached.
    """

    def __init__(self, load: Any, key: str, export_revision: int = 0) -> None:
        self._load, self.key, self.export_revision = load, key, export_revision
        self._module: Any = None

    def get(self) -> Any:
        """The module, made once."""
        if self._module is None:
            self._module = self._load()
        return self._module


def module_of(spec: NetworkSpec) -> Any:
    """The spec's torch module, made now if it is a ``LazyModule``."""
    return spec.module.get() if isinstance(spec.module, LazyModule) else spec.module


@dataclass
class RuntimeOptions:
    """How to run: which runtime, where, at what precision."""

    runtime: RuntimeName = "auto"
    device: str | None = None  # "cpu", "cuda", "cuda:1" (OpenVINO: "gpu", "gpu.1", "npu"); None: the runtime's best
    # None: fp16 on CUDA, fp32 on the CPU; int8: ONNX Runtime or OpenVINO, CPU; auto: as None, but int8 on
    # the CPU where its check keeps it (``henshin.runtimes.build.resolve_precision``)
    precision: Precision | None = None
    max_batch: int = 8
    compile: bool = False  # torch.compile
    cuda_graphs: bool = False
    threads: int = 0  # ONNX Runtime CPU threads (0: all cores)
    cache_dir: Path | None = None
    provider: str = "auto"  # ONNX Runtime's execution provider (providers.PROVIDER_NAMES)
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.runtime not in RUNTIMES:
            raise OptionError(f"--runtime expects one of {', '.join(RUNTIMES)}, got {self.runtime!r}.")
        if self.provider not in PROVIDER_NAMES:
            raise OptionError(f"--provider expects one of {', '.join(PROVIDER_NAMES)}, got {self.provider!r}.")
        if self.provider != "auto":
            if self.runtime not in ("auto", "onnxruntime"):
                raise OptionError(f"--provider applies to --runtime onnxruntime; drop it or use --runtime onnxruntime "
                                  f"instead of {self.runtime}.")
            self.runtime = "onnxruntime"  # a provider named under auto asks for ONNX Runtime
        if self.precision not in (None, "fp32", "fp16", "bf16", "int8", "auto"):
            raise OptionError(f"--precision expects fp32, fp16, bf16, int8 or auto, got {self.precision!r}.")
        if self.precision == "int8" and (self.runtime in ("torch", "tensorrt")
                                         or self.provider not in ("auto", "cpu")
                                         or (self.device or "").startswith("cuda")):
            raise OptionError(INT8_REFUSED)
        if self.max_batch < 1:
            raise OptionError(f"--max-batch expects a whole number of at least 1, got {self.max_batch}.")
        if (self.compile or self.cuda_graphs) and self.runtime in ONNX_RUNTIMES:
            flag = "--compile" if self.compile else "--cuda-graphs"
            raise OptionError(f"{flag} applies to the torch runtime; drop it or use --runtime torch.")
        if self.device is not None and not DEVICE.fullmatch(self.device):
            raise OptionError(f"--device expects cpu, cuda or cuda:N (N a GPU number from 0), or gpu, gpu.N or npu "
                              f"with --runtime openvino, got {self.device!r}.")
        if self.device is not None and self.device[:3] in ("gpu", "npu") and self.runtime != "openvino":
            raise OptionError(f"--device {self.device} names an OpenVINO device; add --runtime openvino, "
                              "or use cuda or cuda:N for an NVIDIA GPU.")
        if self.runtime == "openvino" and (self.device or "").startswith("cuda"):
            raise OptionError("OpenVINO runs on Intel devices (cpu, gpu, npu); drop --device or use another runtime.")
        half = self.precision in ("fp16", "bf16")
        if half and self.device == "cpu" and self.runtime != "openvino":
            raise OptionError(f"--precision {self.precision} needs a CUDA device; use fp32 on the CPU.")
        if half and self.runtime == "onnxruntime" and (self.precision == "bf16" or self.provider not in HALF_PROVIDERS):
            raise OptionError(f"ONNX Runtime runs networks in fp32 here; drop --precision {self.precision} "
                              "or use --runtime torch or tensorrt on a GPU.")
        if self.runtime == "tensorrt" and self.device == "cpu":
            raise OptionError("TensorRT runs on a CUDA GPU only; drop --device cpu or use --runtime onnxruntime.")
        if self.runtime == "tensorrt" and self.precision == "bf16":
            raise OptionError("TensorRT runs fp32 or fp16 here; use --precision fp16.")


def check_available(options: RuntimeOptions) -> None:
    """Refuse, before any work, a runtime, device or precision this machine does not have."""
    if options.runtime == "torch" and not has_module("torch"):
        raise RuntimeUnavailableError("torch is not installed; install it with: pip install 'henshin[torch]'.")
    if options.runtime in ("onnxruntime", "tensorrt"):
        offer_for(options.runtime, options.provider, options.device, survey())  # one sentence if none is offered
        return
    if options.runtime == "openvino":
        from henshin.runtimes.openvino_devices import openvino_device

        openvino_device(options.device, None if options.precision == "auto" else options.precision)
        return
    wants_gpu = (options.device or "").startswith("cuda") or options.precision in ("fp16", "bf16")
    if not wants_gpu:
        return
    asked = f"--device {options.device}" if options.device else f"--precision {options.precision}"
    if not cuda_available():
        raise RuntimeUnavailableError(f"{asked} needs a CUDA GPU, and torch sees none on this machine; "
                                      "leave it out to run on the CPU.")
    index = int(options.device.partition(":")[2] or 0) if options.device else 0
    import torch

    count = torch.cuda.device_count()
    if index >= count:
        raise RuntimeUnavailableError(f"--device {options.device}: this machine has {count} GPU"
                                      f"{'s' if count > 1 else ''} (cuda:0 to cuda:{count - 1}); pick one of them.")


# -- what is available ------------------------------------------------------------

_NOTED: set[str] = set()


def _note_once(message: str) -> None:
    """Log a fallback once per process, not once per network."""
    if message not in _NOTED:
        _NOTED.add(message)
        log.info("%s", message)



def has_module(name: str) -> bool:
    """True when ``name`` can be imported (without importing it)."""
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):  # a parent package missing, or the module blocked in sys.modules
        return False


def imports(name: str) -> bool:
    """True when ``name`` imports: installed and working (an optional package can be present but broken)."""
    try:
        importlib.import_module(name)
    except Exception:  # noqa: BLE001 - ImportError, or whatever a broken install raises
        return False
    return True


def cuda_available() -> bool:
    """True when torch is installed and sees a CUDA device (torch is imported only where an NVIDIA
    driver may be present: the import alone takes seconds)."""
    if not has_module("torch") or not _nvidia_driver():
        return False
    import torch

    return bool(torch.cuda.is_available())


@functools.lru_cache(maxsize=1)
def _nvidia_driver() -> bool:
    """Whether this machine may have an NVIDIA driver: its kernel module, device or CUDA library
    (asked once a process: looking for the library runs ``ldconfig``, about 40 ms)."""
    if sys.platform == "darwin":
        return False
    if os.path.exists("/proc/driver/nvidia/version") or os.path.exists("/dev/nvidiactl"):
        return True
    import ctypes.util

    return any(ctypes.util.find_library(name) for name in ("cuda", "nvcuda"))


def onnxruntime_providers() -> list[str]:
    """ONNX Runtime's execution providers in this installation."""
    import onnxruntime as ort

    return list(ort.get_available_providers())


def choose_runtime(requested: RuntimeName, has_torch_module: bool, *, found: Survey | None = None,
                   cuda: bool | None = None, onnx: bool | None = None) -> str:
    """Resolve ``auto`` (and check an explicit choice) for one network.

    ``auto``: TensorRT where one of ONNX Runtime's TensorRT providers offers a GPU,
    then torch on CUDA, then ONNX Runtime (its provider chosen by ``auto`` in turn);
    ``found`` is what ONNX Runtime offers (the machine's survey when None). A network
    with no torch module (ONNX-only) runs under the ONNX runtimes only. A torch module
    reaches those through an ONNX export, which needs the ``onnx`` package: without it
    ``auto`` runs the module on eager torch (and says so).
    """
    if requested not in RUNTIMES:
        raise OptionError(f"--runtime expects one of {', '.join(RUNTIMES)}, got {requested!r}.")
    cuda = cuda_available() if cuda is None else cuda

    def exportable() -> bool:  # asked only where the answer matters: importing onnx takes a while
        return not has_torch_module or requested == "torch" or (imports("onnx") if onnx is None else onnx)

    if requested == "auto":
        found = survey() if found is None else found
        if any(found.offered(name) for name in TENSORRT) and exportable():
            return "tensorrt"
        if cuda and has_torch_module:
            return "torch"
        if not exportable() and has_module("torch"):
            _note_once("the onnx package is not installed, so networks run on eager torch on the CPU instead of "
                       "ONNX Runtime (often slower); install it with: pip install 'onnx>=1.16,<1.18'")
            return "torch"
        return "onnxruntime"
    if requested in ONNX_RUNTIMES and not exportable():
        raise RuntimeUnavailableError(f"--runtime {requested} runs this network through an ONNX export, which needs "
                                      "the onnx package; install it with: pip install 'onnx>=1.16,<1.18', "
                                      "or use --runtime torch.")
    if requested == "openvino" and not has_module("openvino"):
        raise RuntimeUnavailableError("OpenVINO is not installed; install it with: pip install 'henshin[openvino]'.")
    if requested == "torch":
        if not has_module("torch"):
            raise RuntimeUnavailableError("torch is not installed; install it with: pip install 'henshin[torch]'.")
        if not has_torch_module:
            raise OptionError("this filter's network is an ONNX graph only; use --runtime onnxruntime, tensorrt "
                              "or openvino.")
    return requested
