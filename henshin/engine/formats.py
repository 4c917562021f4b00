"""The file kinds henshin reads and writes, by suffix, and the names a folder output gives its frames."""

from pathlib import Path

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff"})
VIDEO_SUFFIXES = frozenset({".mp4", ".mov", ".mkv", ".m4v"})


def image_name(index: int, names: list[str] | None) -> str:
    """The file a folder output writes for frame ``index``: the input image's name as a PNG, or a number."""
    return Path(names[index]).stem + ".png" if names else f"{index:06d}.png"
