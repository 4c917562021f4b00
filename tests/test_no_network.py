"""Nothing is downloaded at run time: the demo path runs with the network refused."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

from tests.conftest import decode_video, face_box, inside

ROOT = Path(__file__).resolve().parents[1]

# Loaded by every Python process started with this folder on PYTHONPATH: any Internet socket's
# connect or name lookup is written down and refused (sockets on the machine itself are allowed).
GUARD = """
import os, socket

_LOG = os.environ["HENSHIN_TEST_NETWORK_LOG"]


def _refuse(what):
    with open(_LOG, "a") as log:
        log.write(what + "\\n")
    raise OSError(f"network access refused by the test: {what}")


def _is_local(address):
    return isinstance(address, (str, bytes)) or address[0] in ("127.0.0.1", "::1", "localhost")


_connect, _connect_ex = socket.socket.connect, socket.socket.connect_ex


def connect(self, address):
    return _connect(self, address) if _is_local(address) else _refuse(f"connect {address!r}")


def connect_ex(self, address):
    return _connect_ex(self, address) if _is_local(address) else _refuse(f"connect {address!r}")


_getaddrinfo = socket.getaddrinfo


def getaddrinfo(host, *args, **kwargs):
    if host in (None, "localhost", "127.0.0.1", "::1"):
        return _getaddrinfo(host, *args, **kwargs)
    return _refuse(f"lookup {host!r}")


socket.socket.connect, socket.socket.connect_ex, socket.getaddrinfo = connect, connect_ex, getaddrinfo
"""


def _no_network_prefix() -> list[str]:
    """``unshare -n`` (a new network namespace with no interfaces) where this machine lets us, else nothing."""
    unshare = shutil.which("unshare")
    if unshare and subprocess.run([unshare, "-n", "true"], capture_output=True).returncode == 0:
        return [unshare, "-n"]
    return []


def test_sample_and_convert_run_with_the_network_refused(tmp_path: Path) -> None:
    guard = tmp_path / "guard"
    guard.mkdir()
    (guard / "sitecustomize.py").write_text(GUARD)
    log = tmp_path / "network.log"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(guard), str(ROOT)]),
        "HENSHIN_HOME": str(tmp_path / "home"),
        "HOME": str(tmp_path / "user"),
        "HENSHIN_TEST_NETWORK_LOG": str(log),
    }
    clip, out = tmp_path / "clip.mp4", tmp_path / "styled.mp4"
    prefix = _no_network_prefix()
    for argv in (
        ["sample", str(clip), "--width", "320", "--height", "240", "--frames", "6"],
        ["convert", str(clip), str(out)],
    ):
        run = subprocess.run(
            [*prefix, sys.executable, "-m", "henshin.cli.main", "-q", *argv],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert run.returncode == 0, run.stderr
    assert not log.exists(), (
        log.read_text()
    )  # not one attempt, even one henshin would have survived
    before, _, _ = decode_video(clip)
    after, _, _ = decode_video(out)
    assert len(after) == len(before) == 6
    face = inside(face_box(before[3]), before[3].shape)  # the default filter really ran
    assert np.abs(after[3].astype(int) - before[3]).max(-1)[face].mean() > 15  # measured 34


def test_the_guard_catches_a_download(tmp_path: Path) -> None:
    """The control: the same guard refuses and records a process that does reach for the network."""
    guard = tmp_path / "guard"
    guard.mkdir()
    (guard / "sitecustomize.py").write_text(GUARD)
    log = tmp_path / "network.log"
    env = {**os.environ, "PYTHONPATH": str(guard), "HENSHIN_TEST_NETWORK_LOG": str(log)}
    fetch = (
        "import urllib.request; urllib.request.urlopen('https://example.com/weights.pt', timeout=5)"
    )
    run = subprocess.run(
        [sys.executable, "-c", fetch], env=env, capture_output=True, text=True, timeout=60
    )
    assert run.returncode != 0 and "network access refused by the test" in run.stderr
    assert "example.com" in log.read_text()
