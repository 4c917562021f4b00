"""``henshin models``: list, pull, import and verify the weights filters load."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from henshin import runtimes as rt
from henshin.errors import ModelError, OptionError
from henshin.runtimes import RuntimeOptions


def add_parser(subparsers: Any) -> Any:
    """Add ``models`` and its actions to the top-level subparsers; returns the actions' subparsers."""
    p = subparsers.add_parser("models", help="list, pull, import and verify model weights")
    sub = p.add_subparsers(dest="models_command", required=True, metavar="ACTION")

    q = sub.add_parser("list", help="known models: family, size, licence, source, present or missing, path")
    q.add_argument("--json", action="store_true", help="print the registry and cache state as JSON")
    q.set_defaults(run=_run_list)

    q = sub.add_parser("pull", help="download models from their official location, checked")
    q.add_argument("names", nargs="+", metavar="NAME", help="model name(s) from `henshin models list`")
    q.set_defaults(run=_run_pull)

    q = sub.add_parser("import", help="check a file you downloaded and store it in the cache")
    q.add_argument("name", metavar="NAME", help="model name from `henshin models list`")
    q.add_argument("path", type=Path, metavar="PATH",
                   help="the downloaded file, a folder holding the model's files, or the official archive")
    q.add_argument("--safetensors", action="store_true",
                   help="store PyTorch checkpoints as safetensors (weights and plain options only)")
    q.add_argument("--generator", action="store_true",
                   help="NAME is your own name for a StyleGAN2 generator adapted from FFHQ (rosinality format: "
                        "JoJoGAN, StyleGAN-NADA, ...), checked against the FFHQ generator's layout; then "
                        "--filter latent --param domain=NAME uses it")
    q.set_defaults(run=_run_import)

    q = sub.add_parser("verify", help="re-check hashes and that each stored file loads into its network")
    q.add_argument("name", nargs="?", metavar="NAME", help="one model (default: every model present)")
    q.set_defaults(run=_run_verify)

    q = sub.add_parser("compile", help="build a model's ONNX graph, OpenVINO model or TensorRT engine ahead of time")
    q.add_argument("name", metavar="NAME", help="model name (multistyle26, fns-candy, ...)")
    q.add_argument("--runtime", default="onnxruntime", choices=["onnxruntime", "tensorrt", "openvino"],
                   help="what to build for (default onnxruntime)")
    q.add_argument("--provider", default="auto", metavar="EP", help="ONNX Runtime's execution provider (default auto)")
    q.add_argument("--precision", default=None, help="fp32 or fp16 (default: fp16 for TensorRT, fp32 otherwise)")
    q.add_argument("--max-batch", type=int, default=8, metavar="N", help="largest batch the engine takes (default 8)")
    q.add_argument("--size", type=int, default=256, help="crop side the network runs at (default 256)")
    q.set_defaults(run=_run_compile)
    return sub


def _run_compile(args: argparse.Namespace) -> int:
    from henshin.runtimes.options import check_available

    options = RuntimeOptions(runtime=args.runtime, precision=args.precision, max_batch=args.max_batch,
                             provider=args.provider)
    check_available(options)
    result = compile_model(args.name, options, args.size)
    print(f"{result['model']}: {result['runtime']} at {result['size']}x{result['size']} ready "
          f"in {result['seconds']} s (cached; later runs load it)")
    for key, value in result.items():
        if key.endswith("max_abs_err"):
            print(f"  {key.removesuffix('_max_abs_err')} vs eager fp32 torch: max abs error {value}")
    return 0


def _run_list(args: argparse.Namespace) -> int:
    from henshin.models import store as m

    registry = m.default_registry()
    rows = []
    for entry in registry:
        found = m.present_files(entry)
        # Stored: what is on disk; missing: what a pull downloads, where known.
        size = sum(p.stat().st_size for p in found.values()) if len(found) == len(entry.files) else entry.download
        where = m.file_location(entry, entry.files[0]) if len(entry.files) == 1 \
            else m.file_location(entry, entry.files[0]).parent
        rows.append({"name": entry.name, "family": entry.family, "filter": entry.filter, "size": size,
                     "licence": entry.licence, "status": m.status(entry), "source": entry.source,
                     "path": str(where), "title": entry.title, "note": entry.note,
                     "files": [{"name": f.name, "url": f.url, "size": f.size, "sha256": f.sha256,
                                "archive_member": f.archive_member, "package": f.package}
                               for f in entry.files]})
    if args.json:
        print(json.dumps({"cache": str(m.models_dir()), "models": rows}, indent=2))
        return 0
    header = ("NAME", "FAMILY", "SIZE", "LICENCE", "STATUS", "SOURCE", "PATH")
    table = [header] + [(r["name"], r["family"], m.human_size(r["size"]), r["licence"], r["status"],
                         r["source"], r["path"]) for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(header) - 1)]
    for row in table:
        print("  ".join(cell.ljust(w) for cell, w in zip(row[:-1], widths, strict=True)) + "  " + row[-1])
    print(f"cache: {m.models_dir()} (set HENSHIN_HOME to move it)")
    return 0


def _progress(args: argparse.Namespace) -> bool:
    return not getattr(args, "quiet", False) and sys.stderr.isatty()


def _run_pull(args: argparse.Namespace) -> int:
    from henshin.models import store as m

    registry = m.default_registry()
    for name in dict.fromkeys(args.names):
        registry.get(name)  # every name checked before anything is downloaded
    for name in dict.fromkeys(args.names):
        m.pull(name, registry, progress=_progress(args))
    return 0


def _run_import(args: argparse.Namespace) -> int:
    from henshin.models import store as m

    if args.generator:
        m.import_generator(args.name, args.path)
        return 0
    if args.name not in m.default_registry().entries and m.valid_name(args.name):
        raise OptionError(f"unknown model {args.name!r} (see `henshin models list`); to store an adapted StyleGAN2 "
                          "generator under a name of your own, add --generator.")
    m.import_model(args.name, args.path, safetensors=args.safetensors)
    return 0


def _run_verify(args: argparse.Namespace) -> int:
    from henshin.models import store as m

    verdicts = m.verify(args.name)
    for v in verdicts:
        if v.state == "missing":
            continue
        print(f"{v.name}: {v.state}")
        for line in v.lines:
            print(f"  {line}")
    missing = [v.name for v in verdicts if v.state == "missing"]
    if missing:
        print(f"not present, not checked: {', '.join(missing)}")
    failed = [v.name for v in verdicts if v.state in ("failed", "incomplete")]
    if failed:
        fixes = "; ".join(f"henshin models pull {n}" for n in failed)
        raise ModelError(f"{len(failed)} model{'s' if len(failed) > 1 else ''} failed verification "
                         f"({', '.join(failed)}); fetch {'them' if len(failed) > 1 else 'it'} again: {fixes}.")
    return 0


# Registry model name → (filter, its params) that runs it.
COMPILABLE: dict[str, tuple[str, dict[str, str]]] = {
    "multistyle26": ("style", {}),
    **{f"fns-{m}": ("fns", {"model": m}) for m in ("candy", "mosaic", "rain-princess", "udnie")},
}


def compile_model(name: str, options: RuntimeOptions, size: int = 256) -> dict[str, Any]:
    """Build ``name``'s network for ``options`` at ``size``×``size`` crops; returns what was done."""
    from henshin.engine.chains import build_filter
    from henshin.filters.base import filter_class, parse_params

    if name not in COMPILABLE:
        raise OptionError(f"{name} has no network to compile in this version; compilable: {', '.join(COMPILABLE)}.")
    filter_name, params = COMPILABLE[name]
    cls = filter_class(filter_name)
    start = time.perf_counter()
    filt = build_filter(filter_name, parse_params(cls.Params, {**params, "size": str(size)}), options, None)
    try:
        runtime = filt.runtime_for(size, size)
        result: dict[str, Any] = {"model": name, "runtime": rt.describe(runtime), "size": size,
                                  "seconds": round(time.perf_counter() - start, 2)}
        if getattr(filt, "net", None) is not None:
            spec = runtime.spec  # the network as built: its module, inputs and which carry the batch
            check = runtime if isinstance(runtime, rt.OnnxRuntime) else rt.OnnxRuntime(
                spec, RuntimeOptions(runtime="onnxruntime", device="cpu", cache_dir=options.cache_dir),
                rt.onnx_file(spec, options))
            result["onnx_max_abs_err"] = round(rt.parity(spec, check, batch=2), 5)
            if check is not runtime:
                result[f"{runtime.name}_max_abs_err"] = round(rt.parity(spec, runtime, batch=2), 5)
    finally:
        filt.close()
    return result
