"""Sources: video files, still images, folders; rotation metadata."""

from __future__ import annotations

import numpy as np
import pytest

from henshin.engine.sources import FolderSource, ImageSource, VideoSource, open_source, upright
from henshin.errors import BadInputError, InputNotFoundError
from tests.conftest import CLIP


def test_video_source_reports_rate_size_and_timestamps(clip):
    source = open_source(clip[0])
    assert isinstance(source, VideoSource)
    assert (source.width, source.height) == (CLIP.width, CLIP.height)
    assert source.frame_rate == CLIP.fps
    assert source.has_audio
    frames = list(source)
    source.close()
    assert len(frames) == CLIP.frames
    assert [f.index for f in frames] == list(range(CLIP.frames))
    times = [f.time for f in frames]
    assert times == sorted(times)
    assert times[1] - times[0] == pytest.approx(1 / CLIP.fps)


@pytest.mark.parametrize(("rotation", "k"), [(0, 0), (90, 1), (-90, 3), (180, 2), (270, 3)])
def test_display_rotation_is_applied_counter_clockwise(rotation, k):
    image = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    np.testing.assert_array_equal(upright(image, rotation), np.rot90(image, k))


def test_image_and_folder_sources(face_png, tmp_path):
    single = open_source(face_png)
    assert isinstance(single, ImageSource) and len(list(single)) == 1
    folder = tmp_path / "frames"
    folder.mkdir()
    (folder / "b.png").write_bytes(face_png.read_bytes())
    (folder / "a.png").write_bytes(face_png.read_bytes())
    (folder / "notes.txt").write_text("ignored")
    source = open_source(folder)
    assert isinstance(source, FolderSource)
    assert [p.name for p in source.files] == ["a.png", "b.png"]
    assert [f.index for f in source] == [0, 1]


def test_bad_sources(tmp_path):
    with pytest.raises(InputNotFoundError):
        open_source(tmp_path / "missing.mov")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(BadInputError, match="holds no images"):
        open_source(empty)
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG not really")
    with pytest.raises(BadInputError, match="not a readable image"):
        open_source(broken)
