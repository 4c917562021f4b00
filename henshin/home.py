"""Where henshin keeps what it stores: models and compiled artefacts, under one cache root."""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    """henshin's cache: ``$HENSHIN_HOME`` when set, else the platform's user cache dir."""
    if os.environ.get("HENSHIN_HOME"):
        return Path(os.environ["HENSHIN_HOME"]).expanduser()
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("henshin"))
