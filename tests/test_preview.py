"""The live preview window, under a virtual X screen: it shows the frames, its keys reach live control,
``b`` compares original and filtered, and closing it ends the run with stats written."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from henshin.engine.chains import ChainRequest, FilterGraph
from henshin.engine.live import LiveConfig, LiveRunner
from henshin.engine.smoothing import OneEuroSmoother
from henshin.engine.stages import FaceStages
from henshin.samples import SampleSpec, portrait, write_sample
from henshin.types import Frame
from tests.xscreen import picture_detail, save_png

# Real time on a shared machine: how many frames a live run gets through depends on the load,
# so a run that fell short is tried again (twice); a broken behaviour fails all three.
REALTIME = pytest.mark.flaky(reruns=2)

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def cam_clip(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("preview") / "cam.mp4"
    write_sample(path, SampleSpec(width=320, height=240, frames=48, fps=24, face_height=1.3, audio=False))
    return path


class StillCamera:
    """A live source that shows the same photo at ``fps`` (so any change in the output is the filter's)."""

    def __init__(self, image: np.ndarray, fps: int = 20, seconds: float = 30.0) -> None:
        self.image = image
        self.height, self.width = image.shape[:2]
        self.frame_rate, self.time_base = Fraction(fps), Fraction(1, fps)
        self.frame_count, self.path = None, None
        self.frames = int(fps * seconds)

    def __iter__(self):
        start = time.monotonic()
        for i in range(self.frames):
            time.sleep(max(0.0, start + i / float(self.frame_rate) - time.monotonic()))
            yield Frame(self.image, i, i, self.time_base, time.monotonic_ns())

    def close(self) -> None:
        pass


def _wait(predicate, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError
        time.sleep(0.05)


@REALTIME
def test_live_preview_shows_frames_takes_keys_and_closes_like_quit(xscreen, cam_clip, tmp_path):
    stats_path = tmp_path / "s.json"
    proc = subprocess.Popen([sys.executable, "-m", "henshin.cli.main", "live", "--source", str(cam_clip), "--loop",
                             "--sink", "preview", "--stats", str(stats_path), "--overlay"],
                            cwd=ROOT, env=xscreen.env(), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        window = xscreen.window("henshin", proc=proc)
        deadline = time.monotonic() + 60  # the model's warm-up comes first: look until the frames appear
        while True:
            x, y, w, h = xscreen.geometry(window)
            shot = xscreen.screenshot()
            colours, edges = picture_detail(shot[y:y + h, x:x + w])
            if colours > 2000 and edges > 0.02 or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        save_png(shot, tmp_path / "screen.png")
        assert colours > 2000 and edges > 0.02, (colours, edges)  # a video frame, not an empty canvas
        assert (w, h) == (320, 240)  # the window follows the frame's size
        xscreen.key(window, "n")
        time.sleep(1.5)
        xscreen.close_window(window)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "henshin: control: step style 1" in err and "Traceback" not in err
    stats = json.loads(stats_path.read_text())
    assert stats["end_reason"] == "window closed"
    assert stats["frames_out"] > 20 and stats["latency_ms"]["p50"] is not None


class _Watched:
    """Wraps a PreviewSink to keep what it was given to show."""

    def __init__(self, preview) -> None:
        self.preview, self.repeats = preview, preview.repeats
        self.images: list[np.ndarray] = []

    def write(self, frame, image):
        self.preview.write(frame, image)
        self.images.append(image)

    def pump(self, seconds):
        self.preview.pump(seconds)

    def close(self):
        self.preview.close()

    def abort(self):
        self.preview.abort()


def test_keys_change_the_style_and_every_output_frame_is_shown(xscreen, monkeypatch):
    from henshin.engine.screens import PreviewSink

    monkeypatch.setenv("DISPLAY", xscreen.display)
    graph = FilterGraph(ChainRequest("style", params={"style": "0"}))  # `n` steps it to 1
    stages = FaceStages(graph, OneEuroSmoother())
    photo = np.ascontiguousarray(portrait()[::2, ::2])  # 256x256: a face filling the frame
    runner_box: list[LiveRunner] = []
    preview = PreviewSink(lambda line: runner_box[0].command(line), title="henshin-keys",
                          on_close=lambda: runner_box[0].stop("window closed"))
    watched = _Watched(preview)
    runner = LiveRunner(StillCamera(photo, fps=15), stages, [watched], LiveConfig())
    runner_box.append(runner)
    marks: dict[str, int] = {}

    def operate() -> None:
        window = xscreen.window("henshin-keys")
        _wait(lambda: preview.shown >= 8)
        marks["before"] = len(watched.images)
        xscreen.key(window, "n")
        _wait(lambda: graph.current("style") == 1)
        marks["after"] = len(watched.images) + 2  # the frame in flight may predate the change
        _wait(lambda: len(watched.images) >= marks["after"] + 4)
        xscreen.close_window(window)

    helper = threading.Thread(target=operate, daemon=True)
    helper.start()
    try:
        stats = runner.run()
    finally:
        graph.close()
    helper.join(timeout=5)
    assert stats.end_reason == "window closed"
    # Every frame sent was put on screen but the one in flight when the window closed.
    assert stats.frames_out == len(watched.images) and stats.frames_out - 1 <= preview.shown <= stats.frames_out
    before = np.stack(watched.images[2:marks["before"]]).astype(np.float32)
    after = np.stack(watched.images[marks["after"]:]).astype(np.float32)
    # The same photo in the same style holds still; the next style repaints the face (a part of the frame).
    still = (np.abs(before - before[-1]).max(axis=3) > 24).mean()
    changed = (np.abs(after.mean(axis=0) - before.mean(axis=0)).max(axis=2) > 24).mean()
    assert still < 0.003 and changed > 0.02, (still, changed)


@REALTIME
def test_b_shows_original_and_filtered_side_by_side_with_figures_on_both(xscreen, monkeypatch, tmp_path):
    monkeypatch.setenv("DISPLAY", xscreen.display)
    photo = np.ascontiguousarray(portrait()[::2, ::2])
    # Qt under Xvfb, with no window manager and a loaded machine, leaves about one new window in ten
    # black for good, whatever is drawn into it (reproduced with OpenCV's namedWindow and imshow alone,
    # no henshin code; a window made again paints). A window that shows nothing before `b` is closed
    # and the run made again with a new one, up to three times.
    for attempt in range(3):
        shot = _compare_shot(xscreen, photo, f"henshin-compare-{attempt}")
        if shot is not None:
            break
    else:
        pytest.fail("the preview window never showed a frame in three tries")
    save_png(shot, tmp_path / "compare.png")
    side = photo.shape[1]
    left, right = shot[:, :side].astype(int), shot[:, side:].astype(int)
    assert np.abs(left[40:] - photo[40:].astype(int)).mean() < 6  # the original, as captured
    assert (np.abs(right[40:] - left[40:]).max(axis=2) > 40).mean() > 0.01  # the face's skin, tinted green
    for half in (left, right):  # the figures (white text) in the top band of both halves
        band = half[:40]
        assert ((band > 235).all(axis=2)).sum() > 100


def _compare_shot(xscreen, photo: np.ndarray, title: str) -> np.ndarray | None:
    """A live run into a preview window called ``title``: once it shows frames, ``b``, and the screenshot of
    the side-by-side window; None when the window showed nothing (Qt's black window under Xvfb)."""
    from henshin.engine.screens import PreviewSink

    graph = FilterGraph(ChainRequest("tint", params={"region": "skin", "color": "#00ff00", "strength": "1"}))
    stages = FaceStages(graph, OneEuroSmoother())
    runner_box: list[LiveRunner] = []
    preview = PreviewSink(lambda line: runner_box[0].command(line), title=title)
    runner = LiveRunner(StillCamera(photo, fps=15), stages, [preview], LiveConfig(overlay=True))
    runner_box.append(runner)
    shots: dict[str, np.ndarray] = {}
    side = photo.shape[1]

    def window_shot(window: int) -> np.ndarray:
        x, y, w, h = xscreen.geometry(window)
        return xscreen.screenshot()[y:y + h, x:x + w]

    def operate() -> None:
        window = xscreen.window(title)
        try:
            _wait(lambda: preview.shown >= 5)
            _wait(lambda: window_shot(window)[40:].max() > 0, timeout=10)  # the window shows frames
        except TimeoutError:
            xscreen.close_window(window)  # a black window: this run ends, and the caller makes a new one
            return
        xscreen.key(window, "b")
        _wait(lambda: xscreen.geometry(window)[2] == 2 * side)
        shown = preview.shown
        _wait(lambda: preview.shown >= shown + 3)

        def painted() -> bool:  # a resized window is black until the X server has drawn the next frame
            shots["compare"] = window_shot(window)
            return shots["compare"][40:, :side].max() > 0 and shots["compare"][40:, side:].max() > 0

        _wait(painted, timeout=20)
        xscreen.close_window(window)

    helper = threading.Thread(target=operate, daemon=True)
    helper.start()
    try:
        runner.run()
    finally:
        graph.close()
    helper.join(timeout=5)
    return shots.get("compare")


def test_preview_and_a_virtual_camera_and_a_recording_together(xscreen, monkeypatch, tmp_path):
    import pyvirtualcam

    from henshin.engine.files import VideoFileSink
    from henshin.engine.screens import PreviewSink, VirtualCameraSink
    from tests.conftest import decode_video

    class Backend:
        frames = 0

        def __init__(self, **kw):
            self.fourcc = kw["fourcc"]

        def close(self):
            pass

        def send(self, frame):
            Backend.frames += 1

        def device(self):
            return "test"

        def native_fourcc(self):
            return self.fourcc

    pyvirtualcam.register_backend("henshin-preview-test", Backend)
    monkeypatch.setenv("DISPLAY", xscreen.display)
    graph = FilterGraph(ChainRequest("tint"))
    stages = FaceStages(graph, OneEuroSmoother())
    source = StillCamera(np.ascontiguousarray(portrait()[::2, ::2]), fps=15, seconds=2.0)
    preview = PreviewSink(lambda line: None, title="henshin-together")
    vcam = VirtualCameraSink(source.width, source.height, 15.0, backend="henshin-preview-test")
    record = VideoFileSink(tmp_path / "rec.mp4", source.frame_rate, source.time_base)
    try:
        stats = LiveRunner(source, stages, [vcam, preview, record], LiveConfig()).run()
    finally:
        graph.close()
    sent = stats.frames_out - stats.frames_repeated
    assert sent > 10 and preview.shown == sent
    assert Backend.frames == stats.frames_out  # the camera also gets the repeats that hold its rate
    assert len(decode_video(tmp_path / "rec.mp4")[0]) == sent


def test_convert_preview_shows_every_frame(xscreen, monkeypatch, face_png, tmp_path):
    import shutil

    from henshin.engine.convert import ConvertJob, convert
    from henshin.engine.offline import OfflineConfig
    from henshin.engine.screens import PreviewSink

    monkeypatch.setenv("DISPLAY", xscreen.display)
    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(6):
        shutil.copy(face_png, folder / f"{i}.png")
    preview = PreviewSink(lambda line: None, title="henshin-convert")
    stats = convert(ConvertJob(folder, tmp_path / "out.mp4", filter="tint", extra_sinks=[preview],
                               scheduling=OfflineConfig(progress=False)))
    assert stats.frames_out == 6 and preview.shown == 6


def test_a_closed_preview_waits_out_its_turn_on_the_main_thread(xscreen, monkeypatch):
    """A conversion goes on when its preview is closed; the main thread's turn in the window's loop is then a wait
    (it returned at once, and the conversion's main thread spun beside the stages)."""
    from henshin.engine import screens
    from henshin.engine.screens import PreviewSink
    from henshin.engine.sinks import pump

    monkeypatch.setenv("DISPLAY", xscreen.display)
    preview = PreviewSink(lambda line: None, title="henshin-closed")
    waits = []
    monkeypatch.setattr(screens.time, "sleep", waits.append)
    preview.close()
    assert pump([preview], 0.05) is True
    assert len(waits) == 1 and 0.04 < waits[0] <= 0.05


def test_nothing_shown_gives_null_latency_and_says_why(monkeypatch, cam_clip, tmp_path, caplog):
    import logging

    from henshin.cli.main import main

    def starve(self):  # the processing thread never gets a frame before the source is done
        self._capture_done.wait(30)
        return None

    monkeypatch.setattr(LiveRunner, "_take_newest", starve)
    caplog.set_level(logging.INFO, logger="henshin")
    stats_path = tmp_path / "s.json"
    assert main(["live", "--source", str(cam_clip), "--sink", "null", "--max-frames", "5", "--filter", "tint",
                 "--stats", str(stats_path)]) == 0
    stats = json.loads(stats_path.read_text())
    assert stats["frames_out"] == 0
    assert stats["latency_ms"] == {"p50": None, "p95": None, "p99": None, "max": None}
    assert "nothing was shown (the run ended" in caplog.text and "before the first frame was processed" in caplog.text


def test_a_display_that_does_not_answer_is_one_sentence(monkeypatch, capsys, cam_clip):
    from henshin.cli.main import main
    from henshin.engine import screens

    monkeypatch.setenv("DISPLAY", ":987")
    if Path("/tmp/.X11-unix/X987").exists() or screens._x_display_opens(":987") is None:
        pytest.skip("display :987 exists here, or libX11 is missing to check it")
    assert main(["-q", "live", "--source", str(cam_clip), "--sink", "preview", "--filter", "tint"]) == 2
    err = capsys.readouterr().err
    assert "cannot open the display DISPLAY=:987" in err and "Traceback" not in err
