"""Nothing a user owns is lost: every path henshin writes follows the same rules."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import pytest

from henshin import outputs
from henshin.cli.main import main
from henshin.errors import OutputError
from tests.conftest import forbid


def _run(capsys, *argv: str) -> tuple[int, str]:
    code = main(["-q", *argv])
    return code, capsys.readouterr().err


def _one_sentence(err: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith("henshin:")]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


def _tree(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (hidden ones too) with its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def images(face_png, tmp_path) -> Path:
    folder = tmp_path / "images"
    folder.mkdir()
    for name in ("a.png", "b.png"):
        shutil.copy(face_png, folder / name)
    return folder


# -- folder outputs ---------------------------------------------------------------------------


def test_folder_output_is_written_beside_unrelated_files(capsys, images, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    (out / "keep").mkdir()
    (out / "keep" / "x.png").write_bytes(b"not henshin's")
    code, err = _run(capsys, "convert", str(images), str(out), "--filter", "tint")
    assert code == 0, err
    files = _tree(out)
    assert sorted(files) == ["a.png", "b.png", "keep/x.png", "notes.txt"]
    assert files["notes.txt"] == b"mine" and files["keep/x.png"] == b"not henshin's"
    assert not [p for p in tmp_path.rglob("*") if "partial" in p.name]


def test_overwrite_replaces_only_the_files_henshin_writes(capsys, images, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "a.png").write_bytes(b"old a")
    (out / "zzz.png").write_bytes(b"someone else's")
    code, err = _run(capsys, "convert", str(images), str(out), "--filter", "tint")
    assert code == 2
    assert "already holds a.png" in _one_sentence(err) and "--overwrite" in err
    assert (out / "a.png").read_bytes() == b"old a" and not (out / "b.png").exists()
    assert _run(capsys, "convert", str(images), str(out), "--filter", "tint", "--overwrite")[0] == 0
    assert cv2.imread(str(out / "a.png")) is not None  # replaced by a real image
    assert (out / "zzz.png").read_bytes() == b"someone else's"


def test_output_folder_that_holds_the_input_is_refused(capsys, face_png, tmp_path):
    out = tmp_path / "out"
    (out / "in").mkdir(parents=True)
    shutil.copy(face_png, out / "in" / "a.png")
    (out / "keep.txt").write_text("mine")
    before = _tree(out)
    for target in (out, tmp_path / "out" / "in" / "..", tmp_path):
        code, err = _run(capsys, "convert", str(out / "in"), str(target), "--overwrite")
        assert code == 2
        assert "contains the input" in _one_sentence(err)
    code, err = _run(capsys, "convert", str(out / "in"), str(out / "in"), "--overwrite")
    assert code == 2 and "is the input" in _one_sentence(err)
    assert _tree(out) == before


def test_output_through_a_symlink_to_the_input_is_refused(capsys, clip, tmp_path):
    link = tmp_path / "link.mp4"
    link.symlink_to(clip[0])
    before = clip[0].read_bytes()
    code, err = _run(capsys, "convert", str(clip[0]), str(link), "--overwrite")
    assert code == 2 and "is the input" in _one_sentence(err)
    folder_link = tmp_path / "clips"
    folder_link.symlink_to(clip[0].parent)
    code, err = _run(capsys, "convert", str(clip[0]), str(folder_link / ".." / clip[0].parent.name / clip[0].name),
                     "--overwrite")
    assert code == 2 and "is the input" in _one_sentence(err)
    assert clip[0].read_bytes() == before


def test_new_output_folder_has_the_usual_mode(capsys, images, tmp_path):
    out = tmp_path / "made"
    assert _run(capsys, "convert", str(images), str(out), "--filter", "tint")[0] == 0
    umask = os.umask(0o022)
    os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o777 & ~umask
    assert (out / "a.png").stat().st_mode & 0o777 == 0o666 & ~umask


# -- the output path itself ------------------------------------------------------------------


def test_existing_plain_file_without_suffix_is_refused(capsys, clip, tmp_path):
    plain = tmp_path / "result"
    plain.write_text("keep me")
    code, err = _run(capsys, "convert", str(clip[0]), str(plain), "--overwrite")
    assert code == 2 and "is an existing file" in _one_sentence(err)
    assert plain.read_text() == "keep me"


def test_folder_named_like_an_image_is_refused(capsys, face_png, tmp_path):
    folder = tmp_path / "x.png"
    folder.mkdir()
    (folder / "inside.txt").write_text("keep")
    code, err = _run(capsys, "convert", str(face_png), str(folder), "--overwrite", "--filter", "tint")
    assert code == 2 and "is a folder" in _one_sentence(err)
    assert _tree(folder) == {"inside.txt": b"keep"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.png"]


# -- --stats ----------------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["input", "output", "existing", "missing folder", "folder"])
def test_stats_path_is_checked_before_work(capsys, clip, tmp_path, monkeypatch, where):
    import henshin.engine.convert as convert_module

    forbid(monkeypatch, "the source was opened although --stats was refused", (convert_module, "open_source"))
    copy = tmp_path / "in.mp4"
    shutil.copy(clip[0], copy)
    existing = tmp_path / "notes.json"
    existing.write_text("mine")
    stats = {"input": copy, "output": tmp_path / "out.mp4", "existing": existing,
             "missing folder": tmp_path / "nope" / "s.json", "folder": tmp_path}[where]
    before = _tree(tmp_path)
    code, err = _run(capsys, "convert", str(copy), str(tmp_path / "out.mp4"), "--stats", str(stats))
    assert code == 2
    expect = {"input": "is the input", "output": "is also the output", "existing": "--overwrite",
              "missing folder": "does not exist", "folder": "is a folder"}[where]
    assert expect in _one_sentence(err)
    assert _tree(tmp_path) == before


def test_stats_replace_an_existing_file_only_with_overwrite(capsys, face_png, tmp_path):
    stats = tmp_path / "s.json"
    stats.write_text("old")
    args = ["convert", str(face_png), str(tmp_path / "out.png"), "--filter", "tint", "--stats", str(stats)]
    assert _run(capsys, *args)[0] == 2
    assert stats.read_text() == "old"
    assert _run(capsys, *args, "--overwrite")[0] == 0
    assert json.loads(stats.read_text())["frames_out"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.png", "s.json"]


def test_record_and_stats_may_not_share_a_path(capsys, clip, tmp_path):
    same = tmp_path / "x.mp4"
    code, err = _run(capsys, "live", "--source", str(clip[0]), "--sink", "null", "--record", str(same),
                     "--stats", str(same))
    assert code == 2 and "is also --stats" in _one_sentence(err)
    code, err = _run(capsys, "live", "--source", str(clip[0]), "--sink", "null", "--record", str(clip[0]),
                     "--overwrite")
    assert code == 2 and "is the input" in _one_sentence(err)
    assert list(tmp_path.iterdir()) == []


# -- henshin sample ---------------------------------------------------------------------------


@pytest.mark.parametrize(("args", "expect"), [
    (["--width", "321"], "--width expects an even number"),
    (["--height", "-4"], "--height expects a whole number from"),
    (["--frames", "0"], "--frames expects a whole number from 1"),
    (["--fps", "0"], "--fps expects a whole number from 1"),
    (["--faces", "0"], "--faces expects a whole number from 1"),
])
def test_sample_refuses_sizes_it_cannot_make(capsys, tmp_path, args, expect):
    code, err = _run(capsys, "sample", str(tmp_path / "s.mp4"), *args)
    assert code == 2 and expect in _one_sentence(err)
    assert list(tmp_path.iterdir()) == []


def test_sample_keeps_an_existing_file_and_needs_its_folder(capsys, tmp_path):
    existing = tmp_path / "s.mp4"
    existing.write_bytes(b"my video")
    code, err = _run(capsys, "sample", str(existing), "--frames", "2", "--width", "64", "--height", "64")
    assert code == 2 and "--overwrite" in _one_sentence(err)
    assert existing.read_bytes() == b"my video"
    code, err = _run(capsys, "sample", str(tmp_path / "no" / "s.mp4"))
    assert code == 2 and "does not exist" in _one_sentence(err)
    assert _run(capsys, "sample", str(existing), "--frames", "2", "--width", "64", "--height", "64",
                "--overwrite")[0] == 0
    assert existing.stat().st_size > 1000
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.mp4"]


# -- HENSHIN_HOME -----------------------------------------------------------------------------


def test_henshin_home_that_is_a_file(capsys, tmp_path, monkeypatch, face_png):
    home = tmp_path / "home"
    home.write_text("not a folder")
    monkeypatch.setenv("HENSHIN_HOME", str(home))
    assert main(["doctor"]) == 0
    out = capsys.readouterr().out
    assert "HENSHIN_HOME" in out and "is a file" in out
    code, err = _run(capsys, "models", "import", "fns-candy", str(face_png))
    assert code == 2 and "HENSHIN_HOME" in _one_sentence(err)
    assert home.read_text() == "not a folder"


# -- temporary names and leftovers ---------------------------------------------------------------


def test_leftovers_of_a_dead_process_are_removed_and_a_live_ones_kept(tmp_path):
    target = tmp_path / "out.mp4"
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                              text=True, check=True)
        stale = tmp_path / f".out.mp4.{dead.stdout.strip()}-abc123.partial.mp4"
        running = tmp_path / f".out.mp4.{sleeper.pid}-def456.partial.mp4"
        other = tmp_path / ".other.mp4.1-abc123.partial.mp4"
        for p in (stale, running, other):
            p.write_bytes(b"x")
        tmp = outputs.partial_path(target)
        assert not stale.exists()
        assert running.exists() and other.exists() and tmp.exists()
        assert tmp.name.startswith(".out.mp4.") and ".partial" in tmp.name
        assert outputs.leftovers(target) == []  # this process's own temporary name is in use
        outputs.discard(tmp)
    finally:
        sleeper.kill()
        sleeper.wait()


def test_write_atomic_leaves_the_old_file_when_it_fails(tmp_path, monkeypatch):
    path = tmp_path / "s.json"
    path.write_text("old")

    def broken_replace(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(outputs.os, "replace", broken_replace)
    with pytest.raises(OutputError, match="is full"):
        outputs.write_atomic(path, b"new")
    assert path.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.json"]


def test_folder_output_of_a_video_refuses_numbered_files(capsys, tmp_path):
    from henshin.engine.sinks import check_folder_names

    (tmp_path / "000003.png").write_bytes(b"x")
    (tmp_path / "cover.png").write_bytes(b"x")
    with pytest.raises(OutputError, match="already holds 000003.png"):
        check_folder_names(tmp_path, None, overwrite=False)
    check_folder_names(tmp_path, ["a.jpg", "b.png"], overwrite=False)
    check_folder_names(tmp_path, None, overwrite=True)
