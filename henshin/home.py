"""Where henshin keeps what it stores: models and compiled artefacts under one cache root, settings under one config root."""

from __future__ import annotations

import os
from pathlib import Path

from henshin.errors import OutputError


def cache_root() -> Path:
    """henshin's cache: ``$HENSHIN_HOME`` when set, else the platform's user cache dir."""
    return _root("HENSHIN_HOME", "cache")


def config_root() -> Path:
    """henshin's settings (the panel's presets): ``$HENSHIN_CONFIG`` when set, else the platform's user config dir."""
    return _root("HENSHIN_CONFIG", "config")


def _root(variable: str, kind: str) -> Path:
    """``$variable`` when set (refused when it names a file), else platformdirs' user ``kind`` dir for henshin."""
    if os.environ.get(variable):
        root = Path(os.environ[variable]).expanduser()
        if root.exists() and not root.is_dir():
            raise OutputError(f"{variable}={root} is a file; point {variable} at a folder (it is created "
                              "when missing) or unset it.")
        return root
    from platformdirs import user_cache_dir, user_config_dir

    return Path({"cache": user_cache_dir, "config": user_config_dir}[kind]("henshin"))
