"""The artefact cache: keys from weights and shapes, and files checked against their records.

Exported ONNX graphs and TensorRT plans are cached on disk under a key that
changes with the weights, the shapes, the precision and the software; each file
has a JSON record of its SHA-256, and one that does not match is rebuilt.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import shutil
from pathlib import Path
from typing import Any

from henshin.digest import sha256_file
from henshin.home import cache_root
from henshin.outputs import ensure_folder, write_atomic
from henshin.runtimes.options import LazyModule, NetworkSpec, RuntimeOptions

log = logging.getLogger("henshin")
KEY = re.compile(r"[0-9a-f]{24}")  # cache_key's length

def weights_hash(module: Any) -> str:
    """SHA-256 over a module's parameters and buffers (names, shapes, dtypes, bytes)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        digest.update(f"{name}|{tuple(t.shape)}|{t.dtype}|".encode())
        digest.update(t.view(-1).view(dtype=_byte_dtype()).numpy().tobytes())
    return digest.hexdigest()


def _byte_dtype() -> Any:
    import torch

    return torch.uint8


def cache_key(spec: NetworkSpec, **parts: Any) -> str:
    """A short key for a compiled artefact: the weights plus everything that shapes it."""
    if isinstance(spec.module, LazyModule):
        weights = spec.module.key
    else:
        weights = weights_hash(spec.module) if spec.module is not None else sha256_file(spec.onnx)
    doc = json.dumps({"weights": weights, "inputs": spec.shape_key(), "batched": spec.batched, **parts},
                     sort_keys=True, default=str)
    return hashlib.sha256(doc.encode()).hexdigest()[:24]


def cache_dir(options: RuntimeOptions) -> Path:
    """Where compiled artefacts live: ``<henshin cache>/compiled`` (``$HENSHIN_HOME`` or the user cache dir)."""
    if options.cache_dir is not None:
        root = options.cache_dir
    else:
        root = cache_root() / "compiled"
    return ensure_folder(root, "the cache folder")


def provider_cache(spec: NetworkSpec, options: RuntimeOptions, provider: str, **parts: Any) -> Path:
    """The folder of an execution provider's engine cache for one network, keyed like every artefact.

    ``<compiled>/providers/<network>-<provider>-<key>``: the key follows the weights,
    the shapes and ``parts``; the folder of an earlier key for the same network and
    provider (other weights, other settings) is removed, so a stale engine is rebuilt
    rather than found by the provider.
    """
    root = ensure_folder(cache_dir(options) / "providers", "the provider cache folder")
    stem = f"{spec.key}-{provider}-"
    folder = root / f"{stem}{cache_key(spec, provider=provider, **parts)}"
    for stale in root.glob(f"{stem}*"):
        if stale != folder and KEY.fullmatch(stale.name[len(stem):]):  # not another network whose name extends this one
            log.info("removing the stale %s cache %s", provider, stale.name)
            shutil.rmtree(stale, ignore_errors=True)
    return ensure_folder(folder, f"the {provider} cache folder")


def read_cached(path: Path, meta: dict[str, Any]) -> bytes | None:
    """The bytes of a cached artefact, or None when it is missing, damaged or stale.

    Each artefact has a JSON record beside it with the SHA-256 of its bytes and
    what it was built for; a file whose bytes or record do not match is deleted,
    so a truncated write or a file from other software is rebuilt, never used.
    """
    record = path.with_name(path.name + ".json")
    if not path.exists():
        return None
    try:
        data = path.read_bytes()
        doc = json.loads(record.read_text())
        ok = doc.get("sha256") == hashlib.sha256(data).hexdigest() and doc.get("meta") == _jsonable(meta)
    except (OSError, ValueError):
        ok = False
    if ok:
        return data
    log.warning("cached %s does not match its record; rebuilding it.", path.name)
    for stale in (path, record):
        stale.unlink(missing_ok=True)
    return None


def write_cached(path: Path, data: bytes, meta: dict[str, Any]) -> None:
    """Store an artefact and its record, each under a temporary name first."""
    record = path.with_name(path.name + ".json")
    for target, payload in ((path, data), (record, json.dumps(
            {"sha256": hashlib.sha256(data).hexdigest(), "meta": _jsonable(meta)}, indent=1).encode())):
        write_atomic(target, payload, f"the cached {target.name}")


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))

