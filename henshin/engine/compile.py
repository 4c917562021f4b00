"""``henshin models compile``: build a model's runtime artefacts ahead of time.

Building the filter with the asked-for runtime exports its network to ONNX and,
for TensorRT, builds the engine — both into the cache, where later runs find
them. For a network with a torch module the exported graph is then checked
against eager fp32 torch and the largest difference is reported.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import Any

from henshin.engine import runtimes as rt
from henshin.errors import OptionError

log = logging.getLogger("henshin")

# Registry model name → (filter, its params) that runs it.
COMPILABLE: dict[str, tuple[str, dict[str, str]]] = {
    "multistyle26": ("style", {}),
    **{f"fns-{m}": ("fns", {"model": m}) for m in ("candy", "mosaic", "rain-princess", "udnie")},
}


def compile_model(name: str, options: rt.RuntimeOptions, size: int = 256) -> dict[str, Any]:
    """Build ``name``'s network for ``options`` at ``size``×``size`` crops; returns what was done."""
    from henshin.filters.base import create_filter, filter_class, parse_params

    if name not in COMPILABLE:
        raise OptionError(f"{name} has no network to compile in this version; compilable: {', '.join(COMPILABLE)}.")
    filter_name, params = COMPILABLE[name]
    cls = filter_class(filter_name)
    start = time.perf_counter()
    filt = create_filter(filter_name, parse_params(cls.Params, {**params, "size": str(size)}), options)
    try:
        runtime = filt.runtime_for(size, size)
        result: dict[str, Any] = {"model": name, "runtime": rt.describe(runtime), "size": size,
                                  "seconds": round(time.perf_counter() - start, 2)}
        module = getattr(filt, "net", None)
        if module is not None:
            spec = rt.NetworkSpec(getattr(filt, "key", name), (("image", (3, size, size)),), module=module)
            check = runtime if isinstance(runtime, rt.OnnxRuntime) else rt.OnnxRuntime(
                spec, dataclasses.replace(options, device="cpu"), rt.onnx_file(spec, options))
            scale = 1.0  # fast-neural-style outputs 0..255: the error is in 8-bit levels already
            result["onnx_max_abs_err"] = round(rt.parity(spec, check, batch=2) * scale, 5)
            if check is not runtime:
                result[f"{runtime.name}_max_abs_err"] = round(rt.parity(spec, runtime, batch=2), 5)
    finally:
        filt.close()
    return result
