"""The ``henshin`` command line: one module per command; nothing outside ``cli`` imports it."""

from henshin.cli.main import main

__all__ = ["main"]
