"""What the filters that run a network share: runtime options and weights lookup.

Filters never import the engine at module level (the engine imports them); the
engine hands each filter its runtime options, and these helpers fill in the
defaults when a filter is built directly (in tests, or from Python).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np


def runtime_options(runtime: Any) -> Any:
    """``runtime`` or, when None, the default options (``auto``)."""
    if runtime is not None:
        return runtime
    from henshin.runtimes import RuntimeOptions

    return RuntimeOptions()


def runtime_for_shape(opened: dict[tuple[int, ...], Any], sample: tuple[int, ...],
                      build: Callable[[], Any]) -> Any:
    """The runtime for first inputs of per-sample shape ``sample``.

    One already opened that accepts the shape is reused (eager torch, or an ONNX graph
    whose sizes are free); otherwise ``build`` makes one for it. ``opened`` is the
    filter's cache, keyed by shape.
    """
    if sample not in opened:
        opened[sample] = next((r for r in opened.values() if r.accepts(sample)), None) or build()
    return opened[sample]


def weights_path(model: str, explicit: str = "") -> Path:
    """The weights file for registry model ``model``, or ``explicit`` when given.

    A missing model raises a ModelError that names the exact command to get it.
    """
    from henshin.errors import InputNotFoundError

    if explicit:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise InputNotFoundError(f"weights file {path} does not exist; check the path given with --param weights=.")
        return path
    from henshin.models.store import model_path

    return model_path(model)


def pad_to_multiple(batch: np.ndarray, multiple: int) -> tuple[np.ndarray, int, int]:
    """Reflect-pad (N, C, H, W) so H and W are multiples of ``multiple``; returns it with the original H, W."""
    h, w = batch.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph or pw:
        batch = np.pad(batch, ((0, 0), (0, 0), (0, ph), (0, pw)), mode="reflect")
    return batch, h, w
