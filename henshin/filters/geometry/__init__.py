"""Landmark filters that need no network: warps (``warp``, with preset files in
``presets/``) and region tints (``tint``)."""
