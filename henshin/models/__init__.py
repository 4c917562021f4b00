"""Model weights: the registry (``models.toml``), the store (pull, import, verify) and safe checkpoint loading."""
