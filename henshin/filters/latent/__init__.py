"""Stable StyleGAN latent edits: W+ maths (``maths``), direction files (``directions``),
parameters (``params``), the edit plan (``plan``), per-face state (``state``), artistic
domains (``domains``), the e4e + StyleGAN2 pair (``networks``) and the filter (``filter``)."""

from typing import Any


def __getattr__(name: str) -> Any:
    # ``henshin.filters.latent`` was the W+ maths module: its names stay importable from
    # here for one release.
    import importlib

    module = importlib.import_module("henshin.filters.latent.maths")

    try:
        return getattr(module, name)
    except AttributeError:
        raise AttributeError(f"module 'henshin.filters.latent' has no attribute {name!r}") from None
