"""Style transfer on faces, frames or backgrounds: the 26 built-in styles and any picture
as a style (``filter``, ``arbitrary``), and fast neural style (``fns``)."""

from typing import Any


def __getattr__(name: str) -> Any:
    # ``henshin.filters.style`` was the style filter's module: its names stay importable
    # from here for one release.
    import importlib

    module = importlib.import_module("henshin.filters.style.filter")

    try:
        return getattr(module, name)
    except AttributeError:
        raise AttributeError(f"module 'henshin.filters.style' has no attribute {name!r}") from None
