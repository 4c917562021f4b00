"""ONNX Runtime's execution providers: which this machine has, which devices they offer, and ``auto``.

Plugin providers come as packages from PyPI (``onnxruntime-ep-nv-tensorrt-rtx``,
``onnxruntime-ep-openvino``, ``onnxruntime-ep-mlx``, ``onnxruntime-ep-webgpu``): each
package names its library and its provider, the library is registered with ONNX
Runtime once per process (``register_execution_provider_library``), and the provider
is used through the devices it offers (``get_ep_devices`` →
``SessionOptions.add_provider_for_devices``). Classic builds (``onnxruntime-gpu``,
``onnxruntime-directml``, the macOS wheel's CoreML) compile their provider in and are
passed by name. A provider that is installed but offers no device (no GPU, no driver,
a CPU it does not support) is refused by name in one sentence, and skipped by ``auto``
with one note.
"""

from __future__ import annotations

import ctypes
import functools
import importlib
import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from henshin.errors import OptionError, RuntimeUnavailableError

log = logging.getLogger("henshin")


@dataclass(frozen=True)
class Provider:
    """One execution provider as henshin names it (``--provider NAME``) and as ONNX Runtime does."""

    name: str
    ep: str  # ONNX Runtime's name for it
    label: str  # for messages
    install: str  # how to get it
    needs: str  # the hardware it runs on, for messages
    plugin: str | None = None  # the plugin package's module, None for a provider built into a wheel


PROVIDERS: dict[str, Provider] = {
    p.name: p
    for p in (
        Provider(
            "tensorrt-rtx",
            "NvTensorRTRTXExecutionProvider",
            "TensorRT-RTX",
            "pip install 'henshin[rtx]'",
            "an NVIDIA RTX GPU (Ampere or newer) and its driver",
            "onnxruntime_ep_nv_tensorrt_rtx",
        ),
        Provider(
            "tensorrt",
            "TensorrtExecutionProvider",
            "TensorRT",
            "pip uninstall onnxruntime && pip install onnxruntime-gpu tensorrt",
            "an NVIDIA GPU and its driver",
        ),
        Provider(
            "cuda",
            "CUDAExecutionProvider",
            "CUDA",
            "pip uninstall onnxruntime && pip install onnxruntime-gpu",
            "an NVIDIA GPU and its driver",
        ),
        Provider(
            "migraphx",
            "MIGraphXExecutionProvider",
            "MIGraphX",
            "pip uninstall onnxruntime && pip install onnxruntime-migraphx",
            "an AMD GPU with ROCm",
        ),
        Provider(
            "rocm",
            "ROCMExecutionProvider",
            "ROCm",
            "an onnxruntime build with ROCm (onnxruntime 1.22 or older)",
            "an AMD GPU with ROCm",
        ),
        Provider(
            "mlx",
            "MLXExecutionProvider",
            "MLX",
            "pip install 'henshin[apple]'",
            "Apple Silicon",
            "onnxruntime_ep_mlx",
        ),
        Provider(
            "coreml",
            "CoreMLExecutionProvider",
            "CoreML",
            "the onnxruntime wheel for macOS",
            "a Mac",
        ),
        Provider(
            "directml",
            "DmlExecutionProvider",
            "DirectML",
            "pip uninstall onnxruntime && pip install 'henshin[directml]'",
            "Windows with a DirectX 12 GPU",
        ),
        Provider(
            "openvino",
            "OpenVINOExecutionProvider",
            "OpenVINO",
            "pip install 'henshin[openvino]'",
            "an Intel CPU, GPU or NPU",
            "onnxruntime_ep_openvino",
        ),
        Provider(
            "webgpu",
            "WebGpuExecutionProvider",
            "WebGPU",
            "pip install onnxruntime-ep-webgpu",
            "a GPU with Vulkan, Metal or DirectX 12",
            "onnxruntime_ep_webgpu",
        ),
        Provider("cpu", "CPUExecutionProvider", "CPU", "pip install onnxruntime", "any CPU"),
    )
}

# --provider's values; "tensorrt" (the classic TensorRT provider) is reached through --runtime tensorrt.
PROVIDER_NAMES = (
    "auto",
    "cpu",
    "cuda",
    "tensorrt-rtx",
    "openvino",
    "coreml",
    "mlx",
    "directml",
    "rocm",
    "migraphx",
    "webgpu",
)
# What ``auto`` takes first: TensorRT-RTX on NVIDIA, then CUDA (AMD's next); MLX or CoreML on Apple;
# DirectML on Windows; OpenVINO on Intel; WebGPU wherever nothing closer to the metal is; the CPU last.
AUTO_ORDER = (
    "tensorrt-rtx",
    "tensorrt",
    "cuda",
    "migraphx",
    "rocm",
    "mlx",
    "coreml",
    "directml",
    "openvino",
    "webgpu",
    "cpu",
)
TENSORRT = ("tensorrt-rtx", "tensorrt")  # what --runtime tensorrt runs on, in this order
NVIDIA = ("tensorrt-rtx", "tensorrt", "cuda")  # what --device cuda[:N] can mean under ONNX Runtime
HALF = (
    "tensorrt",
    "migraphx",
    "openvino",
)  # providers with an fp16 switch (the others run the graph's types)


@dataclass(frozen=True)
class Offer:
    """A device a provider offers: ``device`` is CPU, GPU or NPU; ``ep_device`` ONNX Runtime's OrtEpDevice (plugins)."""

    provider: str
    device: str
    vendor: str = ""
    ep_device: Any = None


@dataclass(frozen=True)
class Survey:
    """What this machine's ONNX Runtime has: the devices offered, and why an installed provider offers none."""

    offers: tuple[Offer, ...]
    unusable: dict[str, str] = field(default_factory=dict)  # provider -> why it offers no device
    version: str = ""

    def offered(self, name: str) -> list[Offer]:
        return [o for o in self.offers if o.provider == name]


def plugin_module(provider: Provider) -> Any:
    """The plugin package's module, or None when it is not installed."""
    if provider.plugin is None:
        return None
    try:
        return importlib.import_module(provider.plugin)
    except ImportError:
        return None


@functools.cache
def survey() -> Survey:
    """Register every installed plugin once and list the devices each provider offers (cached per process)."""
    import onnxruntime as ort

    unusable: dict[str, str] = {}
    ep_names: dict[str, str] = {}
    for p in PROVIDERS.values():
        module = plugin_module(p)
        if module is None:
            continue
        ep_names[p.name] = getattr(module, "get_ep_name", lambda p=p: p.ep)()
        try:
            ort.register_execution_provider_library(ep_names[p.name], module.get_library_path())
        except Exception as exc:  # noqa: BLE001 - ONNX Runtime's Fail: the library or its driver does not load
            if "already registered" not in str(exc).lower():
                unusable[p.name] = f"does not load here ({_first_line(exc)})"
    by_ep = {ep_names.get(p.name, p.ep): p.name for p in PROVIDERS.values()}
    offers = [
        Offer(by_ep[d.ep_name], _device_type(d), str(d.device.vendor), d)
        for d in ort.get_ep_devices()
        if d.ep_name in by_ep
    ]
    offers += _classic(set(ort.get_available_providers()), {o.provider for o in offers})
    for name in ep_names:
        if name not in unusable and not any(o.provider == name for o in offers):
            unusable[name] = "offers no device on this machine"
    return Survey(tuple(offers), unusable, ort.__version__)


def _device_type(ep_device: Any) -> str:
    return str(ep_device.device.type).rpartition(".")[2]  # OrtHardwareDeviceType.GPU -> GPU


def _first_line(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text.split("with error: ")[-1].split("FAIL : ")[-1].strip()


def _classic(available: set[str], listed: set[str]) -> list[Offer]:
    """Providers compiled into this onnxruntime wheel that ``get_ep_devices`` does not list, where their hardware is.

    A GPU wheel lists its providers whether or not a GPU is present, so the hardware
    is looked for here: an NVIDIA driver, ROCm's /dev/kfd, macOS, Windows (untested
    on all four: this machine has none of them).
    """
    present = {
        "tensorrt": _nvidia_driver,
        "cuda": _nvidia_driver,
        "migraphx": _rocm,
        "rocm": _rocm,
        "coreml": lambda: sys.platform == "darwin",
        "directml": lambda: sys.platform == "win32",
    }
    return [
        Offer(name, "GPU")
        for name, found in present.items()
        if PROVIDERS[name].ep in available and name not in listed and found()
    ]


def _nvidia_driver() -> bool:
    for lib in ("nvcuda.dll",) if sys.platform == "win32" else ("libcuda.so.1", "libcuda.so"):
        try:
            ctypes.CDLL(lib)
            return True
        except OSError:
            continue
    return False


def _rocm() -> bool:
    return Path("/dev/kfd").exists()


# -- the choice ------------------------------------------------------------------------------

_NOTED: set[str] = set()


def _note_once(message: str) -> None:
    if message not in _NOTED:
        _NOTED.add(message)
        log.info("%s", message)


def choose_provider(
    requested: str,
    found: Survey,
    *,
    device: str | None = None,
    among: Sequence[str] = AUTO_ORDER,
    flag: str = "--provider",
    note: bool = True,
) -> Offer:
    """The device to run on for ``--provider requested`` (``auto``: the first of ``among`` that offers one).

    ``device`` narrows ``auto``: ``cpu`` takes the CPU provider, ``cuda[:N]`` an
    NVIDIA provider. A provider asked for by name that offers no device is one
    sentence naming the fix; under ``auto`` it is skipped with one note (``note``
    False: the choice is only asked about, nothing is printed).
    """
    if requested not in PROVIDER_NAMES and requested not in PROVIDERS:
        raise OptionError(
            f"--provider expects one of {', '.join(PROVIDER_NAMES)}, got {requested!r}."
        )
    if requested != "auto":
        return _named(requested, found, flag)
    if device == "cpu":
        among = ("cpu",)
    elif device is not None and device.startswith("cuda"):
        among = [n for n in among if n in NVIDIA]
    skipped = [f"{n} ({found.unusable[n]})" for n in among if n in found.unusable]
    for name in among:
        offers = found.offered(name)
        if name == "openvino" and "cpu" in among:
            # The plugin offers Intel CPUs too; there auto keeps ONNX Runtime's own CPU provider: on an
            # Intel Xeon the plugin ran the default filter's network no faster and only to 3e-4 of torch
            # (the CPU provider: under 1e-5), and `--runtime auto` runs OpenVINO's own runtime on the CPU anyway.
            if any(o.device == "CPU" for o in offers):
                skipped.append("openvino (its CPU device: ONNX Runtime's own CPU provider runs there)")
            offers = [o for o in offers if o.device != "CPU"]
        if offers:
            if note:
                why = f"; skipped {', '.join(skipped)}" if skipped else ""
                _note_once(
                    f"ONNX Runtime provider: {name} on {offers[0].device} (chosen by auto{why})"
                )
            return offers[0]
    if device is not None and device.startswith("cuda"):
        raise RuntimeUnavailableError(
            f"--device {device}: no ONNX Runtime provider offers an NVIDIA GPU here; "
            f"install {PROVIDERS['tensorrt-rtx'].install!r} or onnxruntime-gpu, "
            "or leave --device out."
        )
    raise RuntimeUnavailableError(
        f"no ONNX Runtime provider offers a device here ({flag} auto); "
        "reinstall onnxruntime: pip install --force-reinstall onnxruntime."
    )


def offer_for(runtime: str, provider: str, device: str | None, found: Survey, note: bool = True) -> Offer:
    """The device ``--runtime onnxruntime|tensorrt`` with ``--provider`` and ``--device`` runs on (or one
    sentence); ``note`` False: ``auto``'s choice is not printed."""
    if runtime == "tensorrt":
        return tensorrt_offer(found)
    return choose_provider(provider, found, device=device, note=note)


def tensorrt_offer(found: Survey) -> Offer:
    """What ``--runtime tensorrt`` runs on: the TensorRT-RTX plugin, else the classic TensorRT provider."""
    for name in TENSORRT:
        if found.offered(name):
            return found.offered(name)[0]
    why = (
        f"the TensorRT-RTX plugin is installed but {found.unusable['tensorrt-rtx']}"
        if "tensorrt-rtx" in found.unusable
        else "neither TensorRT provider of ONNX Runtime is installed"
    )
    raise RuntimeUnavailableError(
        f"--runtime tensorrt runs TensorRT through ONNX Runtime, and {why}; "
        f"on a machine with {PROVIDERS['tensorrt-rtx'].needs} install it with: "
        f"{PROVIDERS['tensorrt-rtx'].install}, or use --runtime onnxruntime."
    )


def _named(name: str, found: Survey, flag: str) -> Offer:
    offers = found.offered(name)
    if offers:
        return offers[0]
    p = PROVIDERS[name]
    if name in found.unusable:
        raise RuntimeUnavailableError(
            f"{flag} {name}: the {p.label} provider is installed but {found.unusable[name]}; "
            f"it runs on {p.needs}; leave --provider out to let auto choose."
        )
    raise RuntimeUnavailableError(
        f"{flag} {name}: this ONNX Runtime has no {p.label} provider; "
        f"install it with: {p.install} (it needs {p.needs})."
    )
