"""OpenVINO's devices and what they run: the only module that imports ``openvino``.

Kept apart from the runtime so that the option checks (``check_available``) can ask
about devices without importing the runtimes that use the options.
"""

from __future__ import annotations

import sys
from typing import Any

from henshin.errors import OptionError, RuntimeUnavailableError


def version() -> str:
    """OpenVINO's version string."""
    return _openvino().get_version()


def core() -> Any:
    return _openvino().Core()


def _openvino() -> Any:
    """The ``openvino`` module, imported without its telemetry.

    Importing ``openvino`` imports its model converter (``openvino.tools.ovc``), which sends a usage
    event to Google Analytics through the ``openvino_telemetry`` package unless a consent file in
    the user's home says no (checked with openvino 2026.4: a name lookup of
    www.google-analytics.com from a forked process). henshin reaches for no network at run time, so
    that package is hidden before the first import: the converter then takes the stub it ships for
    when the package is missing, which sends nothing.
    """
    if "openvino" not in sys.modules:
        sys.modules["openvino_telemetry"] = None  # type: ignore[assignment] # an import of it raises ImportError
    try:
        import openvino as ov
    except ImportError:
        raise RuntimeUnavailableError(
            "OpenVINO is not installed; install it with: pip install 'henshin[openvino]'."
        ) from None
    return ov


def openvino_devices() -> list[str]:
    """OpenVINO's devices on this machine with their names and the precisions henshin runs on them
    ("CPU (AMD EPYC; fp32, int8)"); empty without OpenVINO."""
    try:
        ov_core = core()
    except RuntimeUnavailableError:
        return []
    return [
        f"{d} ({ov_core.get_property(d, 'FULL_DEVICE_NAME')}; {', '.join(precisions(ov_core, d))})"
        for d in ov_core.available_devices
    ]


def precisions(ov_core: Any, device: str) -> list[str]:
    """The ``--precision`` values OpenVINO's ``device`` lists among its optimisation capabilities."""
    caps = [str(c) for c in ov_core.get_property(device, "OPTIMIZATION_CAPABILITIES")]
    return [p for p in ("fp32", "bf16", "fp16", "int8") if p == "fp32" or p.upper() in caps]


def openvino_device(device: str | None, precision: str | None) -> tuple[str, str]:
    """OpenVINO's (device, precision) for ``--device`` and ``--precision``, or one sentence if this machine lacks them.

    No ``--device``: an Intel GPU where OpenVINO sees one, else the CPU.
    """
    ov_core = core()
    have = list(ov_core.available_devices)
    name = device.upper() if device else ("GPU" if "GPU" in have else "CPU")
    if name not in have:
        raise RuntimeUnavailableError(
            f"--device {device}: OpenVINO sees no such device here (it has "
            f"{', '.join(d.lower() for d in have)}); pick one of them."
        )
    precision = precision or "fp32"
    if precision == "fp32":
        return name, precision
    caps = [str(c) for c in ov_core.get_property(name, "OPTIMIZATION_CAPABILITIES")]
    if precision.upper() not in caps:
        raise OptionError(precision_refusal(name, precision, caps))
    return name, precision


# What an OpenVINO CPU needs before it lists a precision among its capabilities.
CPU_NEEDS = {"bf16": "AVX-512 BF16 or AMX", "fp16": "AVX-512 FP16 or AMX-FP16", "int8": "AVX2 or newer"}


def precision_refusal(device: str, precision: str, caps: list[str]) -> str:
    """One sentence: ``precision`` is not offered by OpenVINO's ``device`` here, why, and what to use.

    Asked for anyway, OpenVINO does not refuse: it compiles and runs fp32 (checked with
    bf16 on an AVX2 AMD EPYC), so henshin refuses before any work instead.
    """
    offered = ", ".join(c.lower() for c in caps if c in ("FP32", "FP16", "BF16", "INT8"))
    fallback = "fp32 or int8" if "INT8" in caps else "fp32"
    if device == "CPU":
        return (
            f"--precision {precision} on OpenVINO needs a CPU with {CPU_NEEDS[precision]} (this one runs "
            f"{offered}; asked for {precision}, OpenVINO would run fp32); use --precision {fallback}."
        )
    return f"--precision {precision}: OpenVINO's {device} here runs {offered}; use --precision {fallback}."
