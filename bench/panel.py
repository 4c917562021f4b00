"""Panel scenario: what the control panel costs the live loop, and a command's round trip.

    python -m bench panel [--quick]

The same live run (a looped file played in real time, the style filter, the null sink)
three ways, round-robin: without a panel; with the panel and an API client that asks
what the page asks (the preview at 5 fps, the faces each second, the stats push) and
sends a control line every 200 ms; with the panel and the real page open in headless
Chromium showing the preview (where Chromium and Selenium are installed). Reported:
capture→sink latency p50/p95/p99 and processed fps of each; the round trip of a control
line (sent → answered, which includes waiting for the next frame, since lines apply
between frames) and of ``{"get": "view"}`` (the server alone).
"""

from __future__ import annotations

import asyncio
import json
import shutil
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from bench.clips import make_clip
from bench.harness import measured, pair, peaks, repeat_each, scenario, spread
from henshin.engine.camera import RealtimeFileSource
from henshin.engine.chains import ChainRequest, FilterGraph
from henshin.engine.live import LiveConfig, LiveRunner
from henshin.engine.panel import Panel, preview_jpeg
from henshin.engine.panelstate import PanelAddress
from henshin.engine.sinks import NullSink
from henshin.engine.smoothing import OneEuroSmoother
from henshin.engine.stages import FaceStages
from henshin.engine.tracking import TrackerConfig

TOKEN = "bench-panel-token"
PREVIEW_S = 0.2  # what the page asks: the preview at 5 fps
LINE_S = 0.2  # a control line every 200 ms (a slider being dragged)


def live_run(clip: Path, frames: int, client: str, config: Path) -> dict[str, Any]:
    """One live run; ``client``: none, api (an aiohttp client asking what the page asks) or page (Chromium)."""
    graph = FilterGraph(ChainRequest("style"))
    stages = FaceStages(graph, OneEuroSmoother(), TrackerConfig(sweep_tiles=False, search_behind=True), frame_rate=30.0)
    runner = LiveRunner(
        RealtimeFileSource(clip, loop=True), stages, [NullSink()], LiveConfig(max_frames=frames)
    )
    panel = visitor = None
    try:
        if client != "none":
            panel = Panel(PanelAddress("127.0.0.1", 0), TOKEN, config)
            panel.start(runner)
            visitor = (ApiClient if client == "api" else PageClient)(
                f"http://127.0.0.1:{panel.port}"
            )
        cpu = time.process_time()
        stats = runner.run().to_json()
        # CPU time of this process (live loop + panel; not Chromium's) per wall second: less
        # swayed by other work on a shared machine than the latencies are.
        stats["cpu_percent"] = round(
            (time.process_time() - cpu) / max(stats["wall_s"], 1e-6) * 100, 1
        )
    finally:
        if visitor is not None:
            visitor.close()
        if panel is not None:
            panel.close()
        graph.close()
    if isinstance(visitor, ApiClient):
        stats["round_trip_ms"] = {"line": visitor.line_ms, "view": visitor.view_ms}
    return stats


class ApiClient:
    """On a thread of its own: the page's requests (preview at 5 fps, view each second, stats)
    and a ``set strength`` line every 200 ms, with each round trip timed."""

    def __init__(self, base: str) -> None:
        self.base, self.line_ms, self.view_ms = base, [], []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._visit()), daemon=True)
        self._thread.start()

    async def _visit(self) -> None:
        import aiohttp  # the bench's client; henshin's own import of the web server stays in the panel

        async with (
            aiohttp.ClientSession() as session,
            session.ws_connect(f"{self.base}/ws?token={TOKEN}") as ws,
        ):
            answers: asyncio.Queue = asyncio.Queue()
            reader = asyncio.ensure_future(_read(ws, answers))
            preview = asyncio.ensure_future(self._previews(session))
            ident, next_view = 0, 0.0
            while not self._stop.is_set():
                ident += 1
                kind = "view" if time.perf_counter() >= next_view else "line"
                msg = (
                    {"id": ident, "get": "view"}
                    if kind == "view"
                    else {"id": ident, "line": f"set strength {1.0 if ident % 2 else 0.99}"}
                )
                start = time.perf_counter()
                await ws.send_str(json.dumps(msg))
                await answers.get()
                (self.view_ms if kind == "view" else self.line_ms).append(
                    (time.perf_counter() - start) * 1000
                )
                next_view = next_view if kind == "line" else time.perf_counter() + 1.0
                await asyncio.sleep(LINE_S)
            preview.cancel()
            reader.cancel()

    async def _previews(self, session: Any) -> None:
        while True:
            async with session.get(f"{self.base}/preview.jpg?token={TOKEN}") as response:
                await response.read()
            await asyncio.sleep(PREVIEW_S)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


async def _read(ws: Any, answers: asyncio.Queue) -> None:
    async for msg in ws:
        doc = json.loads(msg.data)
        if doc.get("type") != "stats":
            answers.put_nowait(doc)


class PageClient:
    """The panel's page in headless Chromium, showing the preview."""

    def __init__(self, base: str) -> None:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service

        options = webdriver.ChromeOptions()
        options.binary_location = _chromium() or ""
        for arg in (
            "--headless=new",
            "--no-sandbox",
            "--disable-dev-shm-usage",
            "--window-size=420,1000",
        ):
            options.add_argument(arg)
        self.driver = webdriver.Chrome(
            service=Service(shutil.which("chromedriver")), options=options
        )
        self.driver.get(f"{base}/?token={TOKEN}")

    def close(self) -> None:
        self.driver.quit()


def _chromium() -> str | None:
    return next(
        (
            shutil.which(n)
            for n in ("chromium", "chromium-browser", "google-chrome")
            if shutil.which(n)
        ),
        None,
    )


def _page_available() -> str | None:
    """None when the page case can run, else why not."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install selenium)"
    if _chromium() is None or shutil.which("chromedriver") is None:
        return "no Chromium with chromedriver (apt-get install chromium chromium-driver)"
    return None


def _case(name: str, runs: list[dict[str, Any]]) -> dict[str, Any]:
    latency = {
        p: round(statistics.median(r["latency_ms"][p] for r in runs), 2)
        for p in ("p50", "p95", "p99")
    }
    return {
        "name": name,
        "fps": spread([r["fps_processed"] for r in runs]),
        "latency_ms": latency,
        "cpu_percent": spread([r["cpu_percent"] for r in runs], 1),
        "frames_dropped": runs[-1]["frames_dropped"],
        **peaks(runs),
        "runs": runs,
    }


def _preview_cost(width: int, height: int) -> dict[str, Any]:
    """The server's main per-picture work: one output frame to the page's JPEG."""
    image = np.random.default_rng(0).integers(0, 255, (height, width, 3), np.uint8)
    image = cv2.GaussianBlur(image, (0, 0), 3)  # smooth, like a picture, not noise
    times = []
    for _ in range(30):
        start = time.perf_counter()
        preview_jpeg(image)
        times.append((time.perf_counter() - start) * 1000)
    return {"name": f"preview JPEG of a {width}x{height} frame", "ms": spread(times)}


def _round_trips(name: str, values: list[float]) -> dict[str, Any]:
    arr = np.asarray(values)
    return {
        "name": name,
        "ms": spread([float(np.percentile(arr, 50))]),
        "latency_ms": {
            p: round(float(np.percentile(arr, int(p[1:]))), 2) for p in ("p50", "p95", "p99")
        },
        "samples": len(values),
    }


@scenario(
    "panel",
    "live with and without the control panel (API client, page in Chromium); command round trip",
    default=False,
)
def panel(quick: bool) -> dict[str, Any]:
    """Live p99 without a panel, with an API client, with the page; round trips of a line and of get view."""
    width, height, frames = (640, 360, 150) if quick else (1280, 720, 450)
    skipped = []
    why_not = _page_available()
    with tempfile.TemporaryDirectory() as tmp:
        clip = make_clip(Path(tmp), width, height, 90, fps=30, audio=False)
        kinds = ["none", "api"] + ([] if why_not else ["page"])
        if why_not:
            skipped.append({"case": "page in Chromium", "reason": why_not})
        fns = [measured(lambda k=k: live_run(clip.path, frames, k, Path(tmp))) for k in kinds]
        results = dict(zip(kinds, repeat_each(fns, quick), strict=True))
    labels = {"none": "no panel", "api": "panel + API client", "page": "panel + page in Chromium"}
    size = f"style live {width}x{height}@30"
    cases = [_case(f"{size}, {labels[k]}", runs) for k, runs in results.items()]
    trips = [r["round_trip_ms"] for r in results["api"]]
    cases.append(
        _round_trips(
            "control line round trip (sent → answered)", [v for t in trips for v in t["line"]]
        )
    )
    cases.append(
        _round_trips("get view round trip (server only)", [v for t in trips for v in t["view"]])
    )
    cases.append(_preview_cost(width, height))
    base_p99 = cases[0]["latency_ms"]["p99"]
    pairs = [
        pair(
            f"live p99, {labels[k]}",
            "ms",
            ("no panel", base_p99),
            (labels[k], case["latency_ms"]["p99"]),
        )
        for k, case in zip(list(results)[1:], cases[1 : len(results)], strict=True)
    ]
    notes = [
        f"{frames} captured frames per run at 30 fps, the style filter, null sink; latency is capture→sink",
        "the API client asks what the page asks (preview at 5 fps, view each second, the stats push) and "
        "sends set strength every 200 ms",
        "a control line applies between frames, so its round trip includes waiting for the next frame",
        "the page case runs Chromium on the same cores as the live loop, as a dock in OBS would",
        "cpu_percent: this process's CPU time per wall second (live loop and panel; not Chromium's)",
    ]
    return {
        "title": "the control panel's cost to the live loop",
        "cases": cases,
        "pairs": pairs,
        "skipped": skipped,
        "notes": notes,
    }
