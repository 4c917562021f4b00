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


def test_the_encoder_gives_the_same_bytes_for_the_same_frames(tmp_path):
    """x264's AVX-512 code gave the same frames other pictures from run to run on an Intel Xeon (the
    first of four encodes differed, or the fourth); the sink asks x264 for CPU-independent output."""
    from fractions import Fraction

    from henshin.engine.files import VideoFileSink
    from henshin.samples import SampleSpec, write_sample
    from henshin.types import Frame
    from tests.conftest import decode_video

    write_sample(tmp_path / "src.mp4", SampleSpec(width=320, height=240, frames=6, fps=24, face_height=1.3, audio=False))
    rng = np.random.default_rng(0)
    frames = [np.clip(f.astype(int) + rng.integers(-20, 20, f.shape), 0, 255).astype(np.uint8)
              for f in decode_video(tmp_path / "src.mp4")[0]]
    files = []
    for run in range(4):
        sink = VideoFileSink(tmp_path / f"{run}.mp4", Fraction(24), Fraction(1, 24))
        for i, image in enumerate(frames):
            sink.write(Frame(image, i, i, Fraction(1, 24)), image)
        sink.close()
        files.append((tmp_path / f"{run}.mp4").read_bytes())
    assert all(f == files[0] for f in files[1:])


def test_an_image_with_a_video_name_is_read_as_the_image(face_png, tmp_path, caplog):
    import logging
    import shutil

    renamed = tmp_path / "photo.mp4"
    shutil.copy(face_png, renamed)
    caplog.set_level(logging.INFO, logger="henshin")
    source = open_source(renamed)
    assert isinstance(source, ImageSource) and source.frame_count == 1
    assert any("is a PNG image despite its name" in line for line in _log_lines(caplog))


def _still_video(path, pix_fmt: str = "yuv420p", frames: int = 2) -> np.ndarray:
    """A short lossless H.264 file of the face on a gradient (320×240); returns the RGB picture written."""
    from fractions import Fraction

    import av
    import cv2

    from henshin.samples import background, portrait

    image = background(320, 240)
    image[:, 40:280] = cv2.resize(portrait(), (240, 240), interpolation=cv2.INTER_AREA)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=24)
        stream.width, stream.height, stream.pix_fmt, stream.options = 320, 240, pix_fmt, {"qp": "0"}
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24").reformat(format=pix_fmt)
            frame.pts, frame.time_base = i, Fraction(1, 24)
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return image


def _rotate_track(src, dest) -> None:
    """Copy an MP4, writing a phone's portrait matrix into its track header (tkhd), as cameras record it.

    ISO/IEC 14496-12 tkhd (version 0): after the box type, 40 bytes of fields, then the 3×3
    matrix {a, b, u, c, d, v, x, y, w} (16.16 fixed, u/v/w 2.30). {0, 1, -1, 0} with x = the
    coded height maps (x, y) to (height - y, x): shown turned 90° clockwise.
    """
    import struct

    data = bytearray(src.read_bytes())
    at = data.index(b"tkhd") + 4
    assert data[at] == 0  # version 0
    data[at + 40:at + 76] = struct.pack(">9i", 0, 1 << 16, 0, -(1 << 16), 0, 0, 240 << 16, 0, 1 << 30)
    dest.write_bytes(bytes(data))


def test_a_real_file_s_rotation_metadata_is_applied(tmp_path):
    from henshin.cli.main import main
    from tests.conftest import decode_video

    plain, turned = tmp_path / "plain.mp4", tmp_path / "phone.mp4"
    image = _still_video(plain)
    _rotate_track(plain, turned)
    source = open_source(turned)
    (frame, _) = list(source)
    source.close()
    shown = np.rot90(image, -1)  # what a player shows: the coded picture turned clockwise
    assert frame.image.shape == (320, 240, 3)
    assert np.abs(frame.image.astype(int) - shown).mean() < 2  # measured 1.07 (colour conversion only)
    assert np.abs(frame.image.astype(int) - np.rot90(image, 1)).mean() > 40  # the other way round: 81
    out = tmp_path / "out.mp4"  # converted upright: the output is the portrait picture
    assert main(["-q", "convert", str(turned), str(out), "--param", "strength=0", "--crf", "0"]) == 0
    (first, _), _, _ = decode_video(out)
    assert first.shape == (320, 240, 3) and np.abs(first.astype(int) - shown).mean() < 3  # measured 1.3


def test_ten_bit_video_is_reduced_to_eight_bits_and_says_so(tmp_path, caplog):
    import logging

    import av

    from henshin.cli.main import main

    path = tmp_path / "ten.mp4"
    _still_video(path, "yuv420p10le")
    with av.open(str(path)) as container:
        deep = next(container.decode(video=0)).to_ndarray(format="rgb48le")  # the 16-bit view of the 10 bits
    with caplog.at_level(logging.INFO, logger="henshin"):
        source = open_source(path)
        frames = list(source)
        source.close()
    assert "yuv420p10le (more than 8 bits per channel) reduced to 8 bits per channel" in caplog.text
    image = frames[0].image
    assert image.dtype == np.uint8 and image.shape == (240, 320, 3)
    # about the 16-bit view's nearest level (measured mean 0.87, max 3.6: two colour conversions): not the low
    # byte, not the 10-bit values clipped (either is tens of levels off)
    assert np.abs(image.astype(np.float64) - deep / 257.0).mean() < 2.0
    out = tmp_path / "out.mp4"
    assert main(["-q", "convert", str(path), str(out), "--param", "strength=0"]) == 0
    with av.open(str(out)) as container:
        assert container.streams.video[0].codec_context.pix_fmt == "yuv420p"
