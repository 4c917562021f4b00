"""``henshin filters``: every filter, its parameters and their defaults."""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any


def add_parser(sub: Any) -> None:
    """The ``filters`` subcommand."""
    p = sub.add_parser("filters", help="list filters and their parameters")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Print each filter with its parameters, then the compositor's."""
    from henshin.engine.composite import CompositeParams
    from henshin.filters.base import available_filters

    for name, cls in sorted(available_filters().items()):
        print(f"{name}: {(cls.__doc__ or '').strip().partition(chr(10))[0]}")  # a filter may have no docstring
        for f in dataclasses.fields(cls.Params):
            # Names for the values of a whole-number parameter, from 0 up (the built-in styles).
            names = f.metadata.get("choices", ()) if type(f.default) is int else ()
            print(f"  {f.name} = {f.default!r}" + (f" ({names[f.default]}); by number or name:" if names else ""))
            print_names(names)
    print("compositing (any face filter; composite.KEY in a chain):")
    for f in dataclasses.fields(CompositeParams):
        print(f"  {f.name} = {f.default!r}")
    print("chains: --filter warp+style (landmark filters first); per link: --param style.strength=0.5")
    return 0


def print_names(names: tuple[str, ...]) -> None:
    """A parameter's named values (the built-in styles), number and name, four to a line."""
    cells = [f"{i:>2} {name:<14}" for i, name in enumerate(names)]
    for start in range(0, len(cells), 4):
        print("      " + " ".join(cells[start:start + 4]).rstrip())
