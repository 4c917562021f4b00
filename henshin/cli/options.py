"""Options and helpers the commands share: the filter options, --param and --face parsing, stats."""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from henshin.errors import OptionError


def add_filter_options(p: argparse.ArgumentParser) -> None:
    """--filter, --face, --param and the runtime options, shared by convert and live."""
    p.add_argument("--filter", default="style", metavar="CHAIN",
                   help="filter, or a chain like warp+style (default: style); see `henshin filters`")
    p.add_argument("--face", action="append", default=[], metavar="N=CHAIN",
                   help="send face N (numbered in order of appearance from 0) to its own chain, repeatable")
    p.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                   help="filter or compositing parameter, repeatable; LINK.KEY=VALUE for one link of a chain")
    p.add_argument("--runtime", default="auto", metavar="NAME",
                   help="auto, torch, onnxruntime, tensorrt (TensorRT through ONNX Runtime) or openvino "
                        "(default auto: TensorRT where an RTX GPU is offered, else torch on CUDA, else ONNX Runtime "
                        "with the best provider this machine offers); see docs/runtimes.md")
    p.add_argument("--provider", default="auto", metavar="EP",
                   help="ONNX Runtime's execution provider: auto, cpu, cuda, tensorrt-rtx, openvino, coreml, mlx, "
                        "directml, rocm, migraphx or webgpu (default auto; `henshin doctor` lists what this "
                        "machine offers)")
    p.add_argument("--precision", default=None, metavar="P",
                   help="fp32, fp16, bf16, int8 or auto (default: fp16 on a GPU, fp32 on the CPU; int8: ONNX "
                        "Runtime's static quantization, run on the CPU by ONNX Runtime or OpenVINO, kept only where "
                        "it is faster and within 35 dB of fp32; auto: the default, but int8 on the CPU wherever "
                        "that check keeps it, checked once per network and cached)")
    p.add_argument("--device", default=None, metavar="DEV",
                   help="cpu, cuda or cuda:N; gpu, gpu.N or npu with --runtime openvino (default: the runtime's best)")
    p.add_argument("--compile", action="store_true", help="torch runtime: compile the network with torch.compile")
    p.add_argument("--cuda-graphs", action="store_true",
                   help="torch runtime on a GPU: capture each input shape once as a CUDA graph and replay it")
    add_tracker_option(p)
    p.add_argument("--cut-threshold", type=float, default=None, metavar="D",
                   help="shot-change sensitivity: colour-histogram distance 0..1 between frames that counts as "
                        "a cut (default 0.25); 0 turns cut detection off")


TRACKER_PRECISIONS = ("auto", "fp32", "fp16", "bf16")


def add_tracker_option(p: argparse.ArgumentParser) -> None:
    """--tracker and --tracker-precision, shared by convert, live, batch and distill."""
    p.add_argument("--tracker", default="auto", choices=["auto", "mediapipe", "torch"],
                   help="face tracker: mediapipe's graphs on the CPU, or its networks in torch (CPU or GPU); "
                        "auto: torch on a CUDA device, else mediapipe where it is installed (default auto)")
    p.add_argument("--tracker-precision", default="auto", choices=TRACKER_PRECISIONS,
                   help="the torch tracker's networks: auto is fp16 on a CUDA device and fp32 on the CPU (where "
                        "fp16 and bf16 are slower); fp16 keeps the landmarks within 1e-3 of the crop, bf16 does "
                        "not (within about 3e-3, 0.45 px of the 192 px crop) (default auto)")


def tracker_config(args: argparse.Namespace, **settings: Any) -> Any:
    """The TrackerConfig ``--tracker``, ``--tracker-precision`` (and ``--device``) ask for, checked
    before any work."""
    from henshin.engine.tracking import TrackerConfig

    kind, device = resolve_tracker(getattr(args, "tracker", "auto"), getattr(args, "device", None))
    dtype = resolve_tracker_precision(getattr(args, "tracker_precision", "auto"), kind, device)
    return TrackerConfig(kind=kind, device=device, dtype=dtype, **settings)


def resolve_tracker_precision(precision: str, kind: str, device: str) -> str:
    """The torch tracker's dtype for ``--tracker-precision``: auto is fp16 on CUDA, fp32 on the CPU.
    The mediapipe tracker has no precision to choose: a precision other than auto is refused."""
    if precision not in TRACKER_PRECISIONS:
        raise OptionError(f"--tracker-precision expects one of {', '.join(TRACKER_PRECISIONS)}, got {precision!r}.")
    if kind == "mediapipe":
        if precision != "auto":
            raise OptionError(f"--tracker-precision {precision} is for the torch tracker, and the tracker here is "
                              "mediapipe; add --tracker torch or leave --tracker-precision out.")
        return "fp32"
    if precision == "auto":
        return "fp16" if device.startswith("cuda") else "fp32"
    return precision


def resolve_tracker(name: str, device: str | None) -> tuple[str, str]:
    """(kind, device) for ``--tracker NAME``: auto is torch on a CUDA device, else mediapipe where installed."""
    import importlib.util

    has_mediapipe = importlib.util.find_spec("mediapipe") is not None
    on_cuda = bool(device) and device.startswith("cuda")
    if name == "auto":
        name = "torch" if on_cuda or not has_mediapipe else "mediapipe"
    if name == "mediapipe":
        if not has_mediapipe:
            raise OptionError("--tracker mediapipe needs the mediapipe package; install it with "
                              "pip install 'henshin[mediapipe]', or use --tracker torch.")
        if on_cuda:
            raise OptionError(f"--tracker mediapipe runs on the CPU only, not on {device}; use --tracker torch "
                              "for a GPU.")
        return "mediapipe", "cpu"
    if importlib.util.find_spec("torch") is None:
        raise OptionError("--tracker torch needs torch; install it with: pip install 'henshin[torch]'.")
    from henshin.engine.torch_tracking import check_available

    check_available()
    return "torch", device or "cpu"


def cut_config(args: argparse.Namespace) -> Any:
    """The CutConfig the command line asks for (validated)."""
    from henshin.engine.shots import CutConfig

    return CutConfig() if args.cut_threshold is None else CutConfig(threshold=args.cut_threshold)


def runtime_options(args: argparse.Namespace, max_batch: int = 8) -> Any:
    """The RuntimeOptions the command line asks for, checked against this machine before any work."""
    from henshin.runtimes import RuntimeOptions
    from henshin.runtimes.options import check_available

    options = RuntimeOptions(runtime=args.runtime, precision=args.precision, device=args.device, max_batch=max_batch,
                             compile=args.compile, cuda_graphs=args.cuda_graphs, provider=args.provider)
    check_available(options)
    return options


@dataclass(frozen=True)
class FilterChoice:
    """What the filter options shared by convert and live ask for, each checked."""

    filter: str
    params: dict[str, str]
    faces: dict[int, str]
    tracker: Any
    cuts: Any
    runtime: Any


def filter_choice(args: argparse.Namespace, max_faces: int, max_batch: int, **tracker_settings: Any) -> FilterChoice:
    """--filter, --param, --face, the tracker, cut and runtime options, checked before any work starts."""
    return FilterChoice(filter=args.filter, params=parse_param_pairs(args.param), faces=parse_face_routes(args.face),
                        tracker=tracker_config(args, max_faces=max_faces, **tracker_settings),
                        cuts=cut_config(args), runtime=runtime_options(args, max_batch=max_batch))


def parse_param_pairs(pairs: list[str]) -> dict[str, str]:
    """``["style=3", "strength=0.5"]`` → dict, with a clear error for a malformed pair."""
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise OptionError(f"--param expects KEY=VALUE, got {pair!r}.")
        out[key.strip()] = value.strip()
    return out


def parse_face_routes(pairs: list[str]) -> dict[int, str]:
    """``["0=gnr", "1=warp+style"]`` → {0: "gnr", 1: "warp+style"}, each checked."""
    out: dict[int, str] = {}
    for pair in pairs:
        number, sep, chain = pair.partition("=")
        if not sep or not number.strip().isdigit() or not chain.strip():
            raise OptionError(f"--face expects N=CHAIN with N a face number from 0 (like 1=style), got {pair!r}.")
        out[int(number)] = chain.strip()
    return out


def check_count(name: str, value: int | None, low: int) -> None:
    """A whole-number option below its least value is one sentence."""
    if value is not None and value < low:
        raise OptionError(f"{name} expects a whole number of at least {low}, got {value}.")


def check_stats(path: Path | None, inputs: list[Path], taken: list[tuple[str, Path]], overwrite: bool) -> None:
    """Refuse a ``--stats`` path before work starts: an input, another output, a folder, or existing without --overwrite."""
    if path is not None:
        from henshin.outputs import check_writable

        check_writable(path, inputs=inputs, taken=taken, overwrite=overwrite, what="--stats")


def write_stats(path: Path | None, doc: dict[str, Any]) -> None:
    """Write the ``--stats`` document, when asked for (complete or not at all)."""
    if path is not None:
        from henshin.outputs import write_atomic

        write_atomic(path, (json.dumps(doc, indent=2) + "\n").encode(), f"--stats {path}")
