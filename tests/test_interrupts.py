"""Runs that end early end cleanly: signals, a killed process, a full or read-only disk."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from henshin.cli.main import main
from henshin.samples import SampleSpec, write_sample
from tests.conftest import decode_video

# Real time on a shared machine: how many frames a live run gets through depends on the load,
# so a run that fell short is tried again (twice); a broken behaviour fails all three.
REALTIME = pytest.mark.flaky(reruns=2)

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def long_clip(tmp_path_factory) -> Path:
    """Long enough (a few seconds of work on two cores) to be signalled mid-run."""
    path = tmp_path_factory.mktemp("clips") / "long.mp4"
    write_sample(path, SampleSpec(width=320, height=240, frames=120, fps=24, face_height=1.2))
    return path


def _henshin(*argv: str) -> subprocess.Popen:
    # SIGINT back to its default in the child: a shell without job control starts background jobs ignoring it,
    # and Python only turns SIGINT into KeyboardInterrupt where it was not ignored at start
    return subprocess.Popen([sys.executable, "-m", "henshin.cli.main", "-q", *argv], cwd=ROOT,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def _wait_for(predicate, proc: subprocess.Popen, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if proc.poll() is not None:
            raise AssertionError(f"henshin ended before it could be signalled: {proc.communicate()}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError("timed out waiting for the run to start writing")
        time.sleep(0.05)


def _partials(folder: Path) -> list[Path]:
    return [p for p in folder.iterdir() if ".partial" in p.name]


def _tree(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


# -- signals ------------------------------------------------------------------------------------


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])  # SIGINT: Ctrl-C, exit 130
def test_signal_mid_conversion_leaves_the_output_folder_as_it_was(long_clip, tmp_path, signum):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    (out_dir / "notes.txt").write_text("mine")
    before = _tree(out_dir)
    proc = _henshin("convert", str(long_clip), str(out_dir / "styled.mp4"), "--stats", str(tmp_path / "s.json"))
    _wait_for(lambda: _partials(out_dir), proc)
    time.sleep(1.0)  # into the frames
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signum
    lines = [line for line in err.splitlines() if line.startswith("henshin:")]
    name = "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name
    assert lines == [f"henshin: stopped by {name}; {out_dir / 'styled.mp4'} was not "
                     f"written; the figures so far are in {tmp_path / 's.json'}."], err
    assert _tree(out_dir) == before
    stats = json.loads((tmp_path / "s.json").read_text())
    assert stats["end_reason"] == "interrupted" and stats["output"] is None
    assert 0 < stats["frames_in"] < 120


@REALTIME
def test_signal_mid_live_run_keeps_the_recording_and_writes_stats(long_clip, tmp_path):
    record, stats = tmp_path / "rec.mp4", tmp_path / "s.json"
    proc = _henshin("live", "--source", str(long_clip), "--sink", "null", "--record", str(record),
                    "--stats", str(stats), "--filter", "tint")
    _wait_for(lambda: _partials(tmp_path), proc)
    time.sleep(2.0)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "stopped by SIGTERM" in err and "Traceback" not in err
    doc = json.loads(stats.read_text())
    assert doc["end_reason"] == "interrupted" and doc["frames_out"] > 0
    frames, _, _ = decode_video(record)
    assert len(frames) == doc["frames_out"] - doc["frames_repeated"]  # each new frame once, no repeats
    assert _partials(tmp_path) == []


def test_leftovers_of_a_killed_run_are_removed_by_the_next_run(long_clip, clip, tmp_path):
    out = tmp_path / "out.mp4"
    proc = _henshin("convert", str(long_clip), str(out))
    _wait_for(lambda: _partials(tmp_path), proc)
    proc.kill()  # SIGKILL: no handler runs
    proc.wait()
    (left,) = _partials(tmp_path)
    assert left.name.startswith(".out.mp4.") and left.name.endswith(".partial.mp4")
    assert main(["-q", "convert", str(clip[0]), str(out), "--filter", "tint"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.mp4"]


# -- full and read-only disks ----------------------------------------------------------------------


@contextlib.contextmanager
def tmpfs(folder: Path, size: str = "1m", read_only: bool = False) -> Iterator[Path]:
    """A small tmpfs mounted at ``folder`` (root only); always unmounted."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0 or not shutil.which("mount"):
        pytest.skip("a full disk is simulated with a small tmpfs, which needs root (mount)")
    folder.mkdir(exist_ok=True)
    options = f"size={size}" + (",ro" if read_only else "")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip()})")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def _one_sentence(err: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith("henshin:")]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


def test_full_disk_during_a_video_is_one_sentence_and_leaves_nothing(capsys, long_clip, tmp_path):
    with tmpfs(tmp_path / "small", "96k") as disk:
        code = main(["-q", "convert", str(long_clip), str(disk / "out.mp4"), "--filter", "tint"])
        err = capsys.readouterr().err
        assert code == 2
        assert f"the disk holding {disk / 'out.mp4'} is full" in _one_sentence(err)
        assert list(disk.iterdir()) == []


def test_full_disk_for_an_image_leaves_no_partial(capsys, tmp_path):
    import cv2

    noise = (np.random.default_rng(0).random((400, 400, 3)) * 255).astype(np.uint8)
    src = tmp_path / "noise.png"
    cv2.imwrite(str(src), noise)
    with tmpfs(tmp_path / "small", "64k") as disk:
        code = main(["-q", "convert", str(src), str(disk / "out.png"), "--filter", "tint"])
        err = capsys.readouterr().err
        assert code == 2 and "is full" in _one_sentence(err)
        assert list(disk.iterdir()) == []


def test_stats_on_a_full_disk_after_the_run(capsys, face_png, tmp_path):
    with tmpfs(tmp_path / "small", "64k") as disk:
        filler = disk / "filler"
        with contextlib.suppress(OSError), open(filler, "wb") as f:
            while True:
                f.write(b"\0" * 4096)
                f.flush()
        code = main(["-q", "convert", str(face_png), str(tmp_path / "out.png"), "--filter", "tint",
                     "--stats", str(disk / "s.json")])
        err = capsys.readouterr().err
        assert code == 2 and "is full" in _one_sentence(err)
        assert sorted(p.name for p in disk.iterdir()) == ["filler"]


def test_read_only_disk_is_refused_before_work(capsys, clip, tmp_path, monkeypatch):
    import henshin.engine.convert as convert_module

    monkeypatch.setattr(convert_module, "FilterGraph", None)  # any use would fail: nothing may be loaded
    with tmpfs(tmp_path / "ro", read_only=True) as disk:
        code = main(["-q", "convert", str(clip[0]), str(disk / "out.mp4")])
        err = capsys.readouterr().err
        assert code == 2 and "is on a read-only disk" in _one_sentence(err)
        code = main(["-q", "convert", str(clip[0]), str(tmp_path / "out.mp4"), "--stats", str(disk / "s.json")])
        err = capsys.readouterr().err
        assert code == 2 and "read-only disk" in _one_sentence(err)
    assert not (tmp_path / "out.mp4").exists()


def test_output_folder_removed_during_the_run(capsys, clip, tmp_path, monkeypatch):
    from henshin.engine import files

    out_dir = tmp_path / "gone"
    out_dir.mkdir()
    real_write = files.VideoFileSink.write

    def write_then_vanish(self, frame, image):
        real_write(self, frame, image)
        if frame.index == 5:
            shutil.rmtree(out_dir)

    monkeypatch.setattr(files.VideoFileSink, "write", write_then_vanish)
    code = main(["-q", "convert", str(clip[0]), str(out_dir / "out.mp4"), "--filter", "tint"])
    err = capsys.readouterr().err
    assert code == 2 and "no longer exists" in _one_sentence(err)
    assert not out_dir.exists()
