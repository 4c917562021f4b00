"""A live run with its control panel, in this process, for the panel's tests.

A still clip of two faces (nothing moves, so any two outputs of the same settings
match and a change of settings shows as a change of pixels; the latency governor is off, so
nothing but the settings changes them) played in real time
and looped, through the filters into the null sink and a recorder of the last frames.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np

from henshin.engine.camera import RealtimeFileSource
from henshin.engine.chains import ChainRequest, FilterGraph
from henshin.engine.live import LiveConfig, LiveRunner
from henshin.engine.panel import Panel
from henshin.engine.panelstate import PanelAddress
from henshin.engine.sinks import NullSink
from henshin.engine.smoothing import OneEuroSmoother
from henshin.engine.stages import FaceStages
from henshin.engine.tracking import TrackerConfig
from henshin.samples import SampleSpec, write_sample
from henshin.types import Frame

TOKEN = "panel-test-token-0123"
STILL = SampleSpec(width=320, height=180, frames=8, fps=15, faces=2, face_height=0.95, shift=0.0,
                   rotate_deg=0.0, scale=0.0, light=0.0, audio=False)
SMALL = {"size": "64"}  # style crops of 64 pixels: quick on two shared cores


def still_clip(path: Path) -> Path:
    """Write the still two-face clip to ``path``."""
    write_sample(path, STILL)
    return path


class Recorder:
    """A sink that keeps the last frames it was sent, numbered."""

    repeats = False

    def __init__(self, keep: int = 6) -> None:
        self.count = 0
        self.last: list[np.ndarray] = []
        self._keep = keep
        self._cond = threading.Condition()

    def write(self, frame: Frame, image: np.ndarray) -> None:
        with self._cond:
            self.count += 1
            self.last = [*self.last[-(self._keep - 1):], image]
            self._cond.notify_all()

    def next_frames(self, n: int, timeout: float = 60.0) -> list[np.ndarray]:
        """The ``n`` frames sent after the next one (which may have been in flight)."""
        with self._cond:
            target = self.count + n + 1
            if not self._cond.wait_for(lambda: self.count >= target, timeout):
                raise TimeoutError(f"no {n + 1} frames in {timeout} s")
            return self.last[-n:]

    def close(self) -> None:
        pass

    def abort(self) -> None:
        pass


class PanelRun:
    """A looping live run with its panel; ``stop`` ends both."""

    def __init__(self, clip: Path, config: Path, chain: str = "style", params: dict[str, str] | None = None) -> None:
        self.graph = FilterGraph(ChainRequest(chain, params=dict(SMALL if params is None else params)))
        stages = FaceStages(self.graph, OneEuroSmoother(), TrackerConfig(max_faces=2, sweep_tiles=False, search_behind=True), 15.0)
        self.recorder = Recorder()
        # The governor off: the tests compare the pixels of two moments with the same settings, which a
        # level change (a smaller crop on a loaded machine, with a browser beside) would make differ.
        self.runner = LiveRunner(RealtimeFileSource(clip, loop=True), stages, [NullSink(), self.recorder],
                                 LiveConfig(latency_budget_ms=0))
        self.panel = Panel(PanelAddress("127.0.0.1", 0), TOKEN, config)
        self.panel.start(self.runner)
        self.base = f"http://127.0.0.1:{self.panel.port}"
        self.ws_url = f"{self.base}/ws?token={TOKEN}"
        self.stats = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self.stats = self.runner.run()
        finally:
            self.panel.close()
            self.graph.close()

    def wait_for_faces(self, n: int = 2, timeout: float = 60.0) -> dict[int, tuple[int, int, int, int]]:
        """Each face's box (whole pixels) once ``n`` faces are in view."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            view = self.runner.view
            if view is not None and len(view.faces) >= n:
                return {f.track_id: tuple(int(v) for v in f.box) for f in view.faces}
            time.sleep(0.1)
        raise TimeoutError(f"{n} faces were not in view within {timeout} s")

    def stop(self) -> None:
        self.runner.stop("quit")
        self._thread.join(timeout=30)


def region_change(images: list[np.ndarray], reference: np.ndarray, box: tuple[int, int, int, int]) -> float:
    """Mean absolute difference (8-bit levels) inside ``box`` between the images and ``reference``, the least of them."""
    x0, y0, x1, y1 = box
    ref = reference[y0:y1, x0:x1].astype(np.int16)
    return min(float(np.abs(img[y0:y1, x0:x1].astype(np.int16) - ref).mean()) for img in images)
