"""Safe checkpoint loading: weights only, never code from a file.

Every checkpoint henshin opens goes through ``load_checkpoint``. PyTorch files
are read with ``torch.load(weights_only=True)``: the unpickler rebuilds tensors
and plain containers only, and a file that names any other Python object is
refused before anything is built. A short, explicit allow-list adds the few
inert types that official releases are known to pickle next to their weights.
safetensors and ``.npy`` files hold no code at all and are read as such.

The layout after loading (timm's order): load safely → the family's key remap
(one function next to its network) → ``load_state_strict``.
"""

from __future__ import annotations

import json
import re
import zipfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from henshin.errors import ModelError

# Types a checkpoint may name beyond torch's own weights-only set (tensors,
# storages, dtypes, OrderedDict, plain containers and numbers). Each is inert:
# rebuilding it runs no code taken from the file.
#   argparse.Namespace: training options that some releases pickle whole
#     (e4e/pSp store ``vars(opts)``, a dict, but forks store the Namespace);
#   numpy scalar + dtype: metric values (a best loss) saved next to the weights.
ALLOWED_GLOBALS = ("argparse.Namespace", "numpy.core.multiarray.scalar", "numpy.dtype")

_SAFETENSORS_SEP = "/"  # joins nested dict keys when a checkpoint is stored as safetensors
_UNSUPPORTED = re.compile(r"GLOBAL ([\w.]+)")


def checkpoint_format(path: Path) -> str:
    """What a file is, from its first bytes: torch-zip, torch-legacy, safetensors, npy, onnx or unknown."""
    with open(path, "rb") as f:
        head = f.read(16)
    if head.startswith(b"PK\x03\x04"):
        return "torch-zip"
    if head.startswith(b"\x93NUMPY"):
        return "npy"
    if head[:2] == b"\x80\x02":  # pickle protocol 2: torch's legacy (pre-1.6) format
        return "torch-legacy"
    if len(head) >= 9 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") < 100_000_000:
        return "safetensors"  # 8-byte little-endian header length, then a JSON header
    if path.suffix.lower() == ".onnx":
        return "onnx"
    return "unknown"


def load_checkpoint(path: Path) -> Any:
    """The top-level object of a checkpoint, on the CPU, built without running code from the file.

    Usually a dict (state dicts, ``{"g_ema": ..., "latent_avg": ...}``); a bare
    tensor for direction files; a NumPy array for ``.npy``. A file that asks for
    a type outside the allow-list raises ModelError naming the type and the file.
    """
    path = Path(path)
    if not path.is_file():
        from henshin.errors import InputNotFoundError

        raise InputNotFoundError(f"checkpoint {path} does not exist; check the path.")
    kind = checkpoint_format(path)
    if kind in ("torch-zip", "torch-legacy"):
        return _load_torch(path, kind)
    if kind == "safetensors":
        return _load_safetensors(path)
    if kind == "npy":
        return _load_npy(path)
    raise ModelError(f"{path} is not a checkpoint henshin can read safely: expected a PyTorch, "
                     "safetensors or .npy file.")


def _torch() -> Any:
    try:
        import torch
    except ImportError:
        raise ModelError("reading PyTorch checkpoints needs torch; install it with: pip install 'henshin[torch]'.") from None
    return torch


def allowed_objects() -> list[Any]:
    """The Python objects behind ``ALLOWED_GLOBALS`` that exist in this installation."""
    import argparse
    import importlib

    import numpy as np

    objects: list[Any] = [argparse.Namespace, np.dtype]
    # Unpickling a numpy dtype builds an instance of its per-kind class (numpy.dtypes.Float64DType, ...).
    objects += [type(np.dtype(code)) for code in ("f2", "f4", "f8", "i4", "i8", "u1", "?")]
    for module in ("numpy._core.multiarray", "numpy.core.multiarray"):
        try:
            objects.append(importlib.import_module(module).scalar)
            break
        except (ImportError, AttributeError):
            continue
    return objects


def _allowed_names() -> set[str]:
    return set(ALLOWED_GLOBALS) | {"numpy._core.multiarray.scalar"}  # numpy 2 moved the module


def _load_torch(path: Path, kind: str) -> Any:
    torch = _torch()
    if kind == "torch-zip":
        if not _has_pickle(path):
            raise ModelError(f"{path} is a zip archive, not a PyTorch checkpoint; expected a file written by torch.save.")
        # Read the pickle's opcodes without executing them, so the refusal can name every type at once.
        try:
            wanted = torch.serialization.get_unsafe_globals_in_checkpoint(str(path))
        except Exception as exc:
            raise ModelError(f"{path} is not a readable PyTorch checkpoint ({_first_line(exc)}).") from None
        _refuse(path, [name for name in wanted if name not in _allowed_names()])
    try:
        with torch.serialization.safe_globals(allowed_objects()):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        if isinstance(exc, ModelError):
            raise
        names = _UNSUPPORTED.findall(str(exc))
        if names:
            _refuse(path, names)
        raise ModelError(f"{path} is not a readable PyTorch checkpoint ({_first_line(exc)}).") from None


def _has_pickle(path: Path) -> bool:
    try:
        with zipfile.ZipFile(path) as zf:
            return any(n.endswith("data.pkl") for n in zf.namelist())
    except zipfile.BadZipFile:
        return False


def _refuse(path: Path, names: list[str]) -> None:
    if names:
        listed = ", ".join(dict.fromkeys(names))
        raise ModelError(f"{path} was refused: loading it would build {listed}, which is not on henshin's "
                         f"allow-list of weight types ({', '.join(ALLOWED_GLOBALS)}, tensors and plain "
                         "containers), so it may run code; use the official file or re-save its state dict.")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _load_npy(path: Path) -> Any:
    import numpy as np

    try:
        return np.load(path, allow_pickle=False)
    except ValueError as exc:
        if "allow_pickle" in str(exc):
            raise ModelError(f"{path} was refused: it is a pickled (object) .npy array, which may run code; "
                             "expected a numeric array.") from None
        raise ModelError(f"{path} is not a readable .npy array ({_first_line(exc)}).") from None


# -- safetensors ----------------------------------------------------------------------


def _load_safetensors(path: Path) -> Any:
    try:
        from safetensors import safe_open
    except ImportError:
        raise ModelError("reading safetensors files needs the safetensors package; install it with: "
                         "pip install 'henshin[torch]'.") from None
    _torch()
    try:
        with safe_open(str(path), framework="pt") as f:
            flat = {key: f.get_tensor(key) for key in f.keys()}
            metadata = f.metadata() or {}
    except Exception as exc:
        raise ModelError(f"{path} is not a readable safetensors file ({_first_line(exc)}).") from None
    return unflatten(flat, metadata)


def save_safetensors(obj: Any, path: Path, keep: Iterable[str] = ()) -> None:
    """Write a loaded checkpoint as safetensors: nested dicts flattened with ``/``, options as metadata.

    ``keep``: top-level keys to keep (empty: all). Values that are neither
    tensors nor JSON-able plain data (optimizer internals, say) raise ModelError.
    """
    from safetensors.torch import save_file

    torch = _torch()
    if isinstance(obj, torch.Tensor):
        flat, extra, layout = {"tensor": obj}, {}, "tensor"
    elif isinstance(obj, Mapping):
        keep = set(keep)
        obj = {k: v for k, v in obj.items() if not keep or k in keep}
        flat, extra = {}, {}
        _flatten(obj, "", flat, extra, torch)
        layout = "nested"
    else:
        raise ModelError(f"cannot store a {type(obj).__name__} as safetensors; expected a dict of tensors.")
    # safetensors refuses tensors that share memory; each one gets its own copy.
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in flat.items()}
    metadata = {"henshin.layout": layout, "henshin.extra": json.dumps(extra)}
    save_file(tensors, str(path), metadata=metadata)


def _flatten(obj: Mapping, prefix: str, flat: dict, extra: dict, torch: Any) -> None:
    for key, value in obj.items():
        if not isinstance(key, str) or _SAFETENSORS_SEP in key:
            raise ModelError(f"cannot store key {key!r} as safetensors; expected string keys without '/'.")
        name = prefix + key
        if isinstance(value, torch.Tensor):
            flat[name] = value
        elif isinstance(value, Mapping) and value and all(isinstance(v, torch.Tensor | Mapping) for v in value.values()):
            _flatten(value, name + _SAFETENSORS_SEP, flat, extra, torch)
        else:
            if hasattr(value, "__dict__") and not isinstance(value, type):  # an argparse.Namespace
                value = vars(value)
            try:
                json.dumps(value)
            except (TypeError, ValueError):
                raise ModelError(f"cannot store {name!r} ({type(value).__name__}) as safetensors; "
                                 "expected tensors or plain options.") from None
            extra[name] = value


def unflatten(flat: dict[str, Any], metadata: Mapping[str, str]) -> Any:
    """Undo ``save_safetensors``' flattening; a plain safetensors file comes back as a flat dict."""
    layout = metadata.get("henshin.layout")
    if layout == "tensor":
        return flat["tensor"]
    if layout != "nested":
        return dict(flat)
    out: dict[str, Any] = {}
    items = list(flat.items()) + list(json.loads(metadata.get("henshin.extra", "{}")).items())
    for name, value in items:
        *parents, leaf = name.split(_SAFETENSORS_SEP)
        node = out
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return out


# -- into a network ----------------------------------------------------------------------


def state_mismatch(expected: Mapping[str, Any], state: Mapping[str, Any]) -> str:
    """'' when ``state`` has exactly the keys and shapes of ``expected``, else a short description."""
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    shapes = [f"{k} {tuple(state[k].shape)} (expected {tuple(expected[k].shape)})"
              for k in expected if k in state and tuple(getattr(state[k], "shape", ())) != tuple(expected[k].shape)]
    parts = [f"{label} {', '.join(items[:3])}{', ...' if len(items) > 3 else ''}"
             for label, items in (("missing", missing), ("unexpected", unexpected), ("wrong shape", shapes))
             if items]
    return "; ".join(parts)


def indexed_count(state: Mapping[str, Any], pattern: str) -> int:
    r"""One more than the largest index ``pattern``'s group captures in ``state``'s keys (0: none).

    How a loader reads a repeated block's count (``to_rgbs.(\d+).conv.weight``) from a
    checkpoint; a gap in the indices then shows up as a missing key in the strict load.
    """
    found = [int(m.group(1)) for key in state if (m := re.fullmatch(pattern, key))]
    return max(found) + 1 if found else 0


def load_state_strict(module: Any, state: Mapping[str, Any], what: str, path: Path | str) -> Any:
    """Load ``state`` into ``module`` strictly; a mismatch is one sentence naming a few keys.

    ``what`` names the family for the message: "... is not a fast-neural-style
    checkpoint: missing conv1.conv2d.weight, ...".
    """
    problem = state_mismatch(module.state_dict(), state)
    if problem:
        raise ModelError(f"{path} is not a {what} checkpoint: {problem}.")
    module.load_state_dict(dict(state), strict=True)
    return module
