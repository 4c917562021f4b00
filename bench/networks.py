"""The face networks per runtime: ms per face and FLOPs per face.

    python -m bench.networks [--quick] [--only e4e,stylegan2-1024] [--runtimes torch,onnxruntime]
                             [--out bench/results/networks.json]

Each network is built in its official configuration with seeded random weights (what a
network costs does not depend on its weights' values):

- ``e4e``: encoder4editing's IR-SE50, FPN and 18 style blocks, on a 256×256 face;
- ``stylegan2-256`` / ``stylegan2-1024``: the FFHQ config-f generator (rosinality layout,
  channel multiplier 2) synthesising from W+ (14 / 18 rows) with its fixed noise;
- ``gnr``: GANs N' Roses' released generator (256 px, 8-d style), face and style code to
  anime face, at batch 1, 4 and 8.

Per network, runtime and batch: ms per face (median, min–max of the repeats after a
warm-up; CUDA synchronised inside the timed region), the largest absolute difference from
eager fp32 torch on the same input (output units: W+ for e4e, RGB in [-1, 1] for the
generators), and FLOPs per face counted by ``torch.utils.flop_counter.FlopCounterMode``
(two per multiply-add) on eager torch. Runtimes as in ``bench.runtimes``: torch and ONNX
Runtime on the CPU; eager fp32/fp16, torch.compile, CUDA graphs, ONNX Runtime CUDA and
TensorRT where a GPU has them.
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

from bench.common import network_label, report, result_rows, timed_ms
from bench.runtimes import configurations
from henshin import runtimes as rt
from henshin.runtimes import NetworkSpec, RuntimeOptions


@dataclasses.dataclass
class Network:
    key: str
    build: Callable[[], Any]  # () -> torch module, eval mode, fp32, CPU
    inputs: Callable[[Any, int], list[np.ndarray]]  # (module, batch) -> seeded inputs
    spec: Callable[[Any], NetworkSpec]
    batches: tuple[int, ...] = (1,)
    source: str = ""


def _seeded(factory: Callable[[], Any]) -> Any:
    import torch

    torch.manual_seed(0)
    return factory().eval().requires_grad_(False)


def _e4e() -> Any:
    from henshin.nets.e4e import E4EEncoder

    return _seeded(lambda: E4EEncoder(18))


def _generator(size: int) -> Callable[[], Any]:
    def build() -> Any:
        from henshin.nets.stylegan2 import StyleGAN2Generator, rosinality_channels

        return _seeded(lambda: StyleGAN2Generator(size, 512, 8, rosinality_channels(2)))

    return build


def _gnr() -> Any:
    from henshin.nets.gnr import GNR

    return _seeded(GNR)


def _faces(module: Any, batch: int) -> list[np.ndarray]:
    return [np.random.default_rng(batch).uniform(-1, 1, (batch, 3, 256, 256)).astype(np.float32)]


def _w_plus(module: Any, batch: int) -> list[np.ndarray]:
    """W+ codes as the generator would see them: mapped normals, one per face, on every row."""
    import torch

    z = torch.from_numpy(np.random.default_rng(batch).standard_normal((batch, 512)).astype(np.float32))
    with torch.no_grad():
        w = module.mapping(z)
    return [w[:, None].repeat(1, module.n_latent, 1).numpy()]


def _faces_and_styles(module: Any, batch: int) -> list[np.ndarray]:
    rng = np.random.default_rng(batch)
    return [rng.uniform(-1, 1, (batch, 3, 256, 256)).astype(np.float32),
            rng.standard_normal((batch, 8)).astype(np.float32)]


NETWORKS = [
    Network("e4e", _e4e, _faces, lambda m: NetworkSpec("e4e", (("image", (3, 256, 256)),), module=m),
            source="encoder4editing Encoder4Editing(50, 'ir_se'), stylegan_size 1024"),
    Network("stylegan2-256", _generator(256), _w_plus,
            lambda m: NetworkSpec("stylegan2-256", (("w_plus", (m.n_latent, 512)),), module=m),
            source="rosinality Generator(256, 512, 8, channel_multiplier=2)"),
    Network("stylegan2-1024", _generator(1024), _w_plus,
            lambda m: NetworkSpec("stylegan2-1024", (("w_plus", (m.n_latent, 512)),), module=m),
            source="rosinality Generator(1024, 512, 8, channel_multiplier=2): FFHQ config-f"),
    Network("gnr", _gnr, _faces_and_styles,
            lambda m: NetworkSpec("gnr", (("image", (3, 256, 256)), ("style", (8,))), module=m),
            batches=(1, 4, 8), source="GANsNRoses Generator(256, 4, 8, 5, n_res=1): decode(content(x), style)"),
]


def flops_per_face(module: Any, inputs: list[np.ndarray]) -> int:
    """FLOPs of one face through eager torch, as FlopCounterMode counts them (2 per multiply-add)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    args = [torch.from_numpy(a[:1]) for a in inputs]
    with FlopCounterMode(display=False) as counter:  # its module tracker wants grad mode on
        module(*args)
    return int(counter.get_total_flops())


def _as_numpy(out: Any) -> np.ndarray:
    return out.detach().float().cpu().numpy() if hasattr(out, "detach") else np.asarray(out, np.float32)


def measure(quick: bool = False, only: tuple[str, ...] = (), runtimes: tuple[str, ...] = ()) -> dict[str, Any]:
    """Every network × runtime × batch: ms per face, error against eager fp32, FLOPs per face."""
    import torch

    warmup, repeats = (1, 1) if quick else (1, 3)
    gpu = rt.cuda_available()
    sync: Callable[[], None] = torch.cuda.synchronize if gpu else (lambda: None)
    rows: list[dict[str, Any]] = []
    flops: dict[str, int] = {}
    with tempfile.TemporaryDirectory() as cache:
        for net in NETWORKS:
            if only and net.key not in only:
                continue
            module = net.build()
            batches = tuple(b for b in net.batches if b <= 4) if quick else net.batches
            inputs = {b: net.inputs(module, b) for b in batches}
            flops[net.key] = flops_per_face(module, inputs[batches[0]])
            spec = net.spec(module)
            reference: dict[int, np.ndarray] = {}
            for label, options in configurations():
                if runtimes and not any(label.startswith(r) for r in runtimes):
                    continue
                rows += _measure_runtime(net, spec, label, dataclasses.replace(
                    options, max_batch=max(batches), cache_dir=Path(cache)), inputs, reference,
                    (warmup, repeats), sync, gpu)
            del module, spec
    return {"warmup": warmup, "repeats": repeats, "rows": rows,
            "flops_per_face": flops, "sources": {n.key: n.source for n in NETWORKS},
            "error_units": "output units: W+ for e4e, RGB in [-1, 1] for the generators",
            "reference": "eager fp32 torch (the first runtime listed) on the same inputs"}


def _measure_runtime(net: Network, spec: NetworkSpec, label: str, options: RuntimeOptions,
                     inputs: dict[int, list[np.ndarray]], reference: dict[int, np.ndarray],
                     plan: tuple[int, int], sync: Callable[[], None], gpu: bool) -> list[dict[str, Any]]:
    import torch

    try:
        runtime = rt.build_runtime(spec, options)
    except Exception as exc:  # noqa: BLE001 - reported as a row, the bench goes on
        return [{"network": net.key, "runtime": label, "error": str(exc).splitlines()[0]}]
    rows = []
    for b, arrays in inputs.items():
        args = arrays
        if gpu and options.runtime == "torch":  # the ONNX runtimes take NumPy
            args = [torch.from_numpy(a).cuda() for a in arrays]
        try:
            out = _as_numpy(runtime(*args))
            times = timed_ms(lambda runtime=runtime, args=args: runtime(*args), plan[1], sync, warmup=plan[0])
        except Exception as exc:  # noqa: BLE001 - out of memory at a large batch, say
            rows.append({"network": net.key, "runtime": label, "batch": b, "error": str(exc).splitlines()[0]})
            continue
        reference.setdefault(b, out)
        per_face = [t / b for t in times]
        rows.append({"network": net.key, "runtime": label, "batch": b,
                     "ms_per_face": round(statistics.median(per_face), 2),
                     "ms_per_face_min": round(min(per_face), 2), "ms_per_face_max": round(max(per_face), 2),
                     "ms_per_call": round(statistics.median(times), 2),
                     "max_abs_err": float(f"{float(np.abs(out - reference[b]).max()):.3g}")})
    del runtime
    return rows


def bench_cases(result: dict[str, Any], prefix: Callable[[dict[str, Any]], str] = lambda r: r["network"]
                ) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
    """``measure``'s rows as bench cases (ms per face, GFLOP per face, max err) and skipped cases."""
    cases, skipped = [], []
    for r in result["rows"]:
        name = f"{prefix(r)} {r['runtime']} b{r.get('batch', '-')}"
        if "error" in r:
            skipped.append({"case": name, "reason": r["error"]})
            continue
        cases.append({"name": name, "ms": {"median": r["ms_per_face"], "min": r["ms_per_face_min"],
                                           "max": r["ms_per_face_max"]},
                      "gflop_per_face": round(result["flops_per_face"][r["network"]] / 1e9, 1),
                      "max_abs_err": r["max_abs_err"]})
    return cases, skipped


def scenario(quick: bool = False) -> dict[str, Any]:
    """The bench suite's entry: one case per network, runtime and batch."""
    result = measure(quick)
    cases, skipped = bench_cases(result)
    notes = [f"ms per face; {result['repeats']} repeats after {result['warmup']} warm-up; seeded random weights "
             f"in the official configurations; max_abs_err in {result['error_units']} against {result['reference']}"]
    return {"title": "face networks: ms per face per runtime", "cases": cases, "skipped": skipped,
            "notes": notes, "raw": result}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="one warm-up and one timed run; batches up to 4")
    parser.add_argument("--only", default="", help="comma-separated networks (e4e, stylegan2-256, stylegan2-1024, gnr)")
    parser.add_argument("--runtimes", default="", help="comma-separated runtime label prefixes (e.g. 'torch cpu')")
    parser.add_argument("--out", type=Path, default=Path("bench/results/networks.json"))
    args = parser.parse_args()
    split = lambda s: tuple(x.strip() for x in s.split(",") if x.strip())  # noqa: E731
    result = measure(args.quick, split(args.only), split(args.runtimes))
    rows = [(f"{key} FLOPs per face", f"{value / 1e9:.1f} GFLOP") for key, value in result["flops_per_face"].items()]
    rows += result_rows(result["rows"], network_label,
                        lambda r: f"{r['ms_per_face']:9.1f} ms/face ({r['ms_per_face_min']:.1f}–{r['ms_per_face_max']:.1f})"
                                  f"  max err {r['max_abs_err']:.3g}")
    report("face networks, ms per face", result, rows, args.out)


if __name__ == "__main__":
    main()
