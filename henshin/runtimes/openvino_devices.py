"""OpenVINO's devices and what they run: the only module that imports ``openvino``.

Kept apart from the runtime so that the option checks (``check_available``) can ask
about devices without importing the runtimes that use the options.
"""

from __future__ import annotations

from typing import Any

from henshin.errors import OptionError, RuntimeUnavailableError


def version() -> str:
    """OpenVINO's version string."""
    import openvino as ov

    return ov.get_version()


def core() -> Any:
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
        ov_core = core()
    except RuntimeUnavailableError:
        return []
    return [
        f"{d} ({ov_core.get_property(d, 'FULL_DEVICE_NAME')})" for d in ov_core.available_devices
    ]


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
    caps = ov_core.get_property(name, "OPTIMIZATION_CAPABILITIES")
    if precision.upper() not in caps:
        raise OptionError(
            f"--precision {precision}: OpenVINO's {name} here runs {', '.join(c for c in caps if c.startswith(('FP', 'BF')))} "
            f"only; use --precision fp32."
        )
    return name, precision
