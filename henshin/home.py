"""Where henshin keeps what it stores: models and compiled artefacts under one cache root, settings under one config root."""

from __future__ import annotations

import os
from pathlib import Path

from henshin.errors import OutputError


def cache_root() -> Path:
    """henshin's cache: ``$HENSHIN_HOME`` when set, else the platform's user cache dir."""
    if os.environ.get("HENSHIN_HOME"):
        root = Path(os.environ["HENSHIN_HOME"]).expanduser()
        if root.exists() and not root.is_dir():
            raise OutputError(f"HENSHIN_HOME={root} is a file; point HENSHIN_HOME at a folder (it is created "
                              "when missing) or unset it.")
        return root
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("henshin"))


def config_root() -> Path:
    """henshin's settings (the panel's presets): ``$HENSHIN_CONFIG`` when set, else the platform's user config dir."""
    if os.environ.get("HENSHIN_CONFIG"):
        root = Path(os.environ["HENSHIN_CONFIG"]).expanduser()
        if root.exists() and not root.is_dir():
            raise OutputError(f"HENSHIN_CONFIG={root} is a file; point HENSHIN_CONFIG at a folder (it is created "
                              "when missing) or unset it.")
        return root
    from platformdirs import user_config_dir

    return Path(user_config_dir("henshin"))
