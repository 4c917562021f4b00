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


def _log_lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records]


def test_alpha_and_16_bit_images_are_changed_with_a_note(tmp_path, caplog):
    import logging

    import cv2

    rgba = np.zeros((40, 30, 4), np.uint8)
    rgba[..., 1], rgba[..., 3] = 200, 90
    cv2.imwrite(str(tmp_path / "rgba.png"), rgba)
    deep = np.full((40, 30, 3), 40000, np.uint16)
    cv2.imwrite(str(tmp_path / "deep.png"), deep)
    caplog.set_level(logging.INFO, logger="henshin")
    image = next(iter(open_source(tmp_path / "rgba.png"))).image
    assert image.shape == (40, 30, 3) and image.dtype == np.uint8 and image[0, 0, 1] == 200
    assert any("alpha" in line and "rgba.png" in line for line in _log_lines(caplog))
    image = next(iter(open_source(tmp_path / "deep.png"))).image
    assert image.dtype == np.uint8 and image[0, 0, 0] == 40000 * 255 // 65535
    assert any("16-bit" in line and "deep.png" in line for line in _log_lines(caplog))


def test_a_folder_of_alpha_images_is_noted_once(tmp_path, caplog):
    import logging

    import cv2

    for i in range(4):
        cv2.imwrite(str(tmp_path / f"{i}.png"), np.full((20, 20, 4), 128, np.uint8))
    caplog.set_level(logging.INFO, logger="henshin")
    source = open_source(tmp_path)
    assert len(list(source)) == 4
    assert sum("alpha" in line for line in _log_lines(caplog)) == 1


def test_odd_frame_sizes_are_padded_with_a_note(tmp_path, caplog):
    import logging
    from fractions import Fraction

    from henshin.engine.files import VideoFileSink
    from henshin.types import Frame
    from tests.conftest import decode_video

    caplog.set_level(logging.INFO, logger="henshin")
    sink = VideoFileSink(tmp_path / "odd.mp4", Fraction(24), Fraction(1, 24))
    for i in range(3):
        sink.write(Frame(np.full((51, 75, 3), 100, np.uint8), i, i, Fraction(1, 24)), np.full((51, 75, 3), 100, np.uint8))
    sink.close()
    frames, _, _ = decode_video(tmp_path / "odd.mp4")
    assert frames[0].shape == (52, 76, 3)
    notes = [line for line in _log_lines(caplog) if "even sides" in line]
    assert len(notes) == 1 and "75x51" in notes[0] and "76x52" in notes[0]


def test_an_image_with_a_video_name_is_read_as_the_image(face_png, tmp_path, caplog):
    import logging
    import shutil

    renamed = tmp_path / "photo.mp4"
    shutil.copy(face_png, renamed)
    caplog.set_level(logging.INFO, logger="henshin")
    source = open_source(renamed)
    assert isinstance(source, ImageSource) and source.frame_count == 1
    assert any("is a PNG image despite its name" in line for line in _log_lines(caplog))
