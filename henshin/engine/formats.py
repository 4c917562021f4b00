"""The file kinds henshin reads and writes, by suffix, and the names a folder output gives its frames."""

from pathlib import Path

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff"})
VIDEO_SUFFIXES = frozenset({".mp4", ".mov", ".mkv", ".m4v"})

# x264's parameters for every H.264 file henshin writes (outputs, recordings, samples): the same bytes on
# every run and every CPU. Without cpu-independent x264's AVX-512 code gave one input different
# pictures from run to run on an Intel Xeon (0.3-1 level mean difference at 320x240), and a video cut
# into chunks on several machines could show seams; no slower there (720p veryfast: 21-24 against
# 25-28 ms CPU a frame), files 0.5 % larger.
X264_PARAMS = "cpu-independent=1"


def image_name(index: int, names: list[str] | None) -> str:
    """The file a folder output writes for frame ``index``: the input image's name as a PNG, or a number."""
    return Path(names[index]).stem + ".png" if names else f"{index:06d}.png"
