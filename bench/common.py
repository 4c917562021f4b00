"""What every benchmark shares: machine metadata, a JSON dump and a plain table."""

from __future__ import annotations

import json
import os
import platform
import sys
from pathlib import Path
from typing import Any


def machine() -> dict[str, Any]:
    """CPU, core count, GPU (if any) and the versions that move the figures."""
    import av
    import numpy
    import onnxruntime

    info: dict[str, Any] = {
        "cpu": _cpu_name(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "numpy": numpy.__version__,
        "onnxruntime": onnxruntime.__version__,
        "av": av.__version__,
        "gpu": None,
    }
    try:
        import torch

        info["torch"] = torch.__version__
        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
    except ImportError:
        pass
    return info


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
    width = max(len(k) for k, _ in rows)
    print(f"\n{name}")
    for key, value in rows:
        print(f"  {key.ljust(width)}  {value}")
    text = json.dumps(doc, indent=2)
    print(text)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text + "\n")
    sys.stdout.flush()
