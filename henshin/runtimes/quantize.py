"""int8 on the CPU: ONNX Runtime's static quantization, run by ONNX Runtime or OpenVINO, kept only where it wins here.

The fp32 graph is quantized in QDQ form (per-channel int8 weights, uint8
activations, min-max ranges), its activation ranges calibrated on the network's
own sample inputs (face crops for the style networks: ``NetworkSpec.calibration``).
The convolutions and matrix products are quantized, except (``fp32_nodes``):

- those computed from the conditioning inputs alone (a style-weight vector times
  the per-style norm scales): tiny, and a range calibrated on a few styles clips
  the others;
- those in the network's own ``NetworkSpec.int8_fp32`` scopes (multistyle26: the
  layers whose int8 rounding costs most, docs/runtimes.md);
- and, in a graph whose convolutions feed an instance normalisation, no
  convolution's output is quantized (``OpTypesToExcludeOutputQuantization``): the
  norm divides each channel by its own spread, so one uint8 range shared by
  channels of very different spread turns into 25 dB of error after one layer.

The result is kept only when, on inputs held out from calibration, its output is
within ``MIN_PSNR_DB`` of the fp32 graph's and it runs faster on this CPU, both run
by the runtime that will run it (ONNX Runtime's CPU provider, or OpenVINO, which
executes the Q/DQ pairs as int8); otherwise the fp32 graph runs and one line says
why. The graph is cached under the network's key and ``RECIPE`` and shared by both
runtimes; the decision is cached beside it per runtime, so the check runs once per
network, shape, runtime and machine.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from henshin.errors import RuntimeUnavailableError
from henshin.outputs import write_atomic
from henshin.runtimes.cache import cache_dir, cache_key, read_cached, write_cached
from henshin.runtimes.options import NetworkSpec, RuntimeOptions

log = logging.getLogger("henshin")

# int8 output this close to fp32's (peak: the fp32 output's range), or it is not used
MIN_PSNR_DB = 35.0
TIMED_RUNS = 9
# int8 must beat fp32 by this much: a tie within timing noise is not worth int8's rounding
MIN_SPEEDUP = 1.05
# Bumped whenever the recipe below changes, so int8 graphs and verdicts cached under an older one are made again
RECIPE = 2
QUANTIZED_OPS = ("Conv", "ConvTranspose", "MatMul", "Gemm")
# What a convolution's output feeding one of these is normalised by: instance norm, fused or spelled out
INSTANCE_NORM_OPS = ("InstanceNormalization", "ReduceMean")


def int8_file(
    spec: NetworkSpec, options: RuntimeOptions, fp32: Path, runtime: str = "onnxruntime"
) -> Path | None:
    """The int8 QDQ graph of ``fp32`` when ``runtime`` keeps it on this machine, else None (fp32 runs; the log
    says why)."""
    samples = list(spec.calibration()) if spec.calibration is not None else []
    if len(samples) < 2:
        log.info("int8 for %s: no sample inputs to calibrate on; running fp32", spec.key)
        return None
    try:
        from onnxruntime.quantization import CalibrationDataReader  # noqa: F401 - checked before any work
    except ImportError:
        raise RuntimeUnavailableError(
            "this ONNX Runtime cannot quantize (onnxruntime.quantization is missing); "
            "drop --precision int8 or reinstall onnxruntime."
        ) from None
    key = cache_key(
        spec,
        precision="int8",
        recipe=RECIPE,
        fp32=spec.int8_fp32,
        cpu=platform.processor() or platform.machine(),
        ort=_ort_version(),
    )
    path = cache_dir(options) / f"{spec.key}-{key}-int8.onnx"
    meta = {"network": spec.key, "precision": "int8", "inputs": spec.shape_key()}
    # ONNX Runtime's CPU provider keeps the name it always had; OpenVINO's names its device too
    suffix = (
        ".verdict.json"
        if runtime == "onnxruntime"
        else f".{runtime}-{options.device or 'auto'}-verdict.json"
    )
    verdict = path.with_name(path.name + suffix)
    graph = read_cached(path, meta)
    if verdict.exists() and graph is not None:
        return _decide(spec, json.loads(verdict.read_text()), path, runtime)
    half = len(samples) // 2
    if graph is None:
        write_cached(path, _quantize(spec, fp32, samples[:half]), meta)
    runners = [_runner(runtime, p, options) for p in (fp32, path)]
    doc = _compare(spec, runners, samples[half:])
    write_atomic(verdict, json.dumps(doc).encode(), f"the cached {verdict.name}")
    return _decide(spec, doc, path, runtime)


def _decide(
    spec: NetworkSpec, doc: dict[str, float], path: Path, runtime: str = "onnxruntime"
) -> Path | None:
    kept = doc["psnr_db"] >= MIN_PSNR_DB and doc["int8_ms"] * MIN_SPEEDUP <= doc["fp32_ms"]
    speed = doc["fp32_ms"] / max(doc["int8_ms"], 1e-9)
    log.info(
        "int8 for %s on %s: %.1f dB from fp32 on its sample inputs (needs %.0f), %.2fx its speed on this CPU; %s",
        spec.key,
        runtime,
        doc["psnr_db"],
        MIN_PSNR_DB,
        speed,
        "running int8" if kept else "running fp32",
    )
    return path if kept else None


def _quantize(spec: NetworkSpec, fp32: Path, samples: Sequence[tuple[np.ndarray, ...]]) -> bytes:
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    names = [name for name, _ in spec.inputs]

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._items = iter([dict(zip(names, sample, strict=True)) for sample in samples])

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self._items, None)

    with tempfile.TemporaryDirectory() as tmp:
        prepared, out = Path(tmp) / "prepared.onnx", Path(tmp) / "int8.onnx"
        quant_pre_process(str(fp32), str(prepared), skip_symbolic_shape=True)
        graph = onnx.load(str(prepared)).graph
        normalised = feeds_instance_norm(graph)
        quantize_static(
            str(prepared),
            str(out),
            Reader(),
            quant_format=QuantFormat.QDQ,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            per_channel=True,
            op_types_to_quantize=list(QUANTIZED_OPS),
            nodes_to_exclude=fp32_nodes(graph, spec),
            extra_options={"OpTypesToExcludeOutputQuantization": ["Conv"]} if normalised else {},
        )
        return out.read_bytes()


def fp32_nodes(graph: Any, spec: NetworkSpec) -> list[str]:
    """The quantizable nodes of ``graph`` (an ONNX GraphProto) that stay fp32: those in ``spec.int8_fp32``'s
    scopes, and those that read nothing computed from the first input (the image)."""
    from_image = {spec.inputs[0][0]}
    keep, matched = [], set()
    for node in graph.node:  # ONNX keeps nodes in topological order
        if any(name in from_image for name in node.input):
            from_image.update(node.output)
        elif node.op_type in QUANTIZED_OPS:
            keep.append(node.name)
            continue
        scope = next((s for s in spec.int8_fp32 if node.name.startswith(f"/{s}/")), None)
        if scope is not None and node.op_type in QUANTIZED_OPS:
            keep.append(node.name)
            matched.add(scope)
    for scope in sorted(set(spec.int8_fp32) - matched):
        log.warning(
            "int8 for %s: no node of scope %s in its graph; it is quantized like the rest",
            spec.key,
            scope,
        )
    return keep


def feeds_instance_norm(graph: Any) -> bool:
    """Whether a convolution's output in ``graph`` goes straight into an instance normalisation."""
    consumers: dict[str, set[str]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, set()).add(node.op_type)
    return any(
        consumers.get(out, set()) & set(INSTANCE_NORM_OPS)
        for node in graph.node
        if node.op_type == "Conv"
        for out in node.output
    )


Runner = Callable[[dict[str, np.ndarray]], np.ndarray]


def _runner(runtime: str, graph: Path, options: RuntimeOptions) -> Runner:
    """One graph, run as ``runtime`` will run it: ONNX Runtime's CPU provider, or OpenVINO on its device."""
    if runtime == "openvino":
        from henshin.runtimes import openvino_devices as devices
        from henshin.runtimes.openvino_runtime import compile_config, fixed_shapes

        core = devices.core()
        device, _ = devices.openvino_device(options.device, "int8")
        config = compile_config(device, "int8", options.threads or os.cpu_count() or 1)
        model = core.read_model(str(graph))
        requests: dict[tuple[tuple[int, ...], ...], Any] = {}

        def run(feed: dict[str, np.ndarray]) -> np.ndarray:
            # Fixed to the sample's shapes, as the runtime compiles it (OpenVinoRuntime).
            shapes = tuple(tuple(a.shape) for a in feed.values())
            if shapes not in requests:
                fixed = fixed_shapes(model, shapes)
                requests[shapes] = core.compile_model(fixed, device, config).create_infer_request()
            return np.array(requests[shapes].infer(list(feed.values()))[0], copy=True)

        return run
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    if options.threads:
        so.intra_op_num_threads = options.threads
    session = ort.InferenceSession(str(graph), so, providers=["CPUExecutionProvider"])
    return lambda feed: session.run(None, feed)[0]


def _compare(
    spec: NetworkSpec, runners: Sequence[Runner], samples: Sequence[tuple[np.ndarray, ...]]
) -> dict[str, float]:
    """PSNR of int8 (the second runner) against fp32 (the first) over held-out samples, and the fastest
    time of each on the first one: their runs interleaved after a warm-up, the minimum of each (a
    shared machine's load only ever adds time, so the minimum is the figure it disturbs least)."""
    names = [name for name, _ in spec.inputs]
    feeds = [dict(zip(names, sample, strict=True)) for sample in samples]
    worst = np.inf
    for feed in feeds:
        a, b = (run(feed).astype(np.float64) for run in runners)
        peak = max(float(a.max() - a.min()), 1e-6)
        mse = float(((a - b) ** 2).mean())
        worst = min(worst, 10 * np.log10(peak**2 / max(mse, 1e-20)))
    times: list[list[float]] = [[] for _ in runners]
    for run in runners:
        run(feeds[0])  # warm-up: first-call allocation and kernel choice
    for _ in range(TIMED_RUNS):
        for run, runs in zip(runners, times, strict=True):
            start = time.perf_counter()
            run(feeds[0])
            runs.append(time.perf_counter() - start)
    fp32_ms, int8_ms = (min(runs) * 1000 for runs in times)
    return {
        "psnr_db": round(float(worst), 2),
        "fp32_ms": round(fp32_ms, 3),
        "int8_ms": round(int8_ms, 3),
    }


def _ort_version() -> Any:
    import onnxruntime as ort

    return ort.__version__
