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
        print(f"{name}: {(cls.__doc__ or '').strip().splitlines()[0]}")
        for f in dataclasses.fields(cls.Params):
            print(f"  {f.name} = {f.default!r}")
    print("compositing (any face filter; composite.KEY in a chain):")
    for f in dataclasses.fields(CompositeParams):
        print(f"  {f.name} = {f.default!r}")
    print("chains: --filter warp+style (landmark filters first); per link: --param style.strength=0.5")
    return 0
