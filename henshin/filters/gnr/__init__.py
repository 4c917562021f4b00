"""GANs N' Roses on faces (``filter``); the network is ``henshin.nets.gnr``."""

from typing import Any


def __getattr__(name: str) -> Any:
    # ``henshin.filters.gnr`` was the network's module: its names stay importable from here
    # for one release (imported on first use, so the filter alone needs no torch import).
    import importlib

    module = importlib.import_module("henshin.nets.gnr")

    try:
        return getattr(module, name)
    except AttributeError:
        raise AttributeError(f"module 'henshin.filters.gnr' has no attribute {name!r}") from None
