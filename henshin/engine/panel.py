"""The live control panel: a page and a WebSocket API over the live run's control lines (aiohttp).

``henshin live --panel [HOST:]PORT`` serves, on its own thread and event loop:

- ``/`` the page (``panel_page/``: plain HTML, CSS and JavaScript shipped in the package);
- ``/ws`` the API: JSON text messages, each answered in the order received. A control line
  (``{"id": 1, "line": "set strength 0.5"}``) goes to the run exactly as a line typed on
  standard input does, is applied before the next processed frame, and is answered with
  the state after it (``henshin.engine.panelstate``); the figures are pushed once a second;
- ``/preview.jpg`` and ``/faces/N.jpg``: the last output (at most 5 new pictures a second)
  and a thumbnail of face N in it.

Every request needs the run's token (``?token=``), otherwise 403 and nothing else; a
WebSocket whose Origin is another site's is refused (403), so a page elsewhere in the same
browser cannot drive the run; at most 8 WebSocket clients at once. A bad message is
answered with an error and the run goes on. This module is the only one that imports the
web server (an import-linter contract).
"""

from __future__ import annotations

import asyncio
import errno
import hmac
import html
import json
import logging
import socket
import threading
import time
from collections.abc import Awaitable, Callable
from importlib import resources
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from aiohttp import WSMsgType, web

from henshin.engine.live import LiveRunner
from henshin.engine.panelstate import (
    PanelAddress,
    control_state,
    controls,
    load_preset,
    preset_folder,
    preset_lines,
    preset_names,
    save_preset,
)
from henshin.errors import HenshinError, OptionError

log = logging.getLogger("henshin")

MAX_MESSAGE = 64 * 1024  # bytes; a longer message is answered with an error
MAX_FRAME = 1024 * 1024  # aiohttp closes the connection (1009) on a longer one, before it is read
MAX_CLIENTS = 8
MAX_PENDING = 512  # answers one client may have waiting before its next message is read
HEARTBEAT_S = 20.0  # a client gone without a word (a dock reloaded) frees its place
STATS_PERIOD_S = 1.0
PREVIEW_PERIOD_S = 0.2  # at most 5 new preview pictures a second, however many pages ask
PREVIEW_WIDTH = 480
THUMB_SIDE = 96
PAGE_FILES = {
    "/": ("index.html", "text/html"),
    "/panel.css": ("panel.css", "text/css"),
    "/panel.js": ("panel.js", "text/javascript"),
}
GETS = ("state", "controls", "view", "presets")

Answer = dict[str, Any]


class Panel:
    """The panel's server for one live run: bound at once (a port in use is found before the
    camera opens), serving from ``start`` until ``close``."""

    def __init__(self, address: PanelAddress, token: str, config: Path) -> None:
        self.address, self._token = address, token
        self.presets = preset_folder(config)
        self._sock = bind(address)
        self.port: int = self._sock.getsockname()[1]
        self._runner: LiveRunner | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._clients: set[_Client] = set()
        self._reserved = 0  # clients counted while their handshake is under way
        self._preview: tuple[int, float, bytes] | None = None  # frame index, when, JPEG
        self._preview_lock: asyncio.Lock | None = None
        self._pages = {path: _read_page(name) for path, (name, _) in PAGE_FILES.items()}
        self._failed: BaseException | None = None

    @property
    def url(self) -> str:
        """The link to print: ``http://HOST:PORT/?token=TOKEN``."""
        return f"{self.address.url(self.port)}/?token={self._token}"

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self, runner: LiveRunner) -> None:
        """Serve ``runner``'s controls from a thread of its own until ``close``."""
        self._runner = runner
        ready = threading.Event()
        self._thread = threading.Thread(
            target=self._serve, args=(ready,), name="henshin-panel", daemon=True
        )
        self._thread.start()
        ready.wait(timeout=30)
        if self._failed is not None:
            raise OptionError(
                f"the control panel could not start ({self._failed}); run without --panel."
            )

    def close(self) -> None:
        """Close every client and the server (the run has ended); safe to call twice."""
        loop, thread = self._loop, self._thread
        if loop is not None and thread is not None and thread.is_alive():
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=10)
        self._sock.close()

    def _serve(self, ready: threading.Event) -> None:
        loop = self._loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        site_runner = None
        try:
            try:
                site_runner = loop.run_until_complete(self._open())
            except BaseException as exc:  # reported by start(), in the main thread
                self._failed = exc
                return
            finally:
                ready.set()
            loop.run_forever()
            loop.run_until_complete(self._shut(site_runner))
        finally:
            loop.close()

    async def _open(self) -> web.AppRunner:
        self._preview_lock = asyncio.Lock()
        app = web.Application(middlewares=[self._guard], client_max_size=MAX_MESSAGE)
        app.router.add_get("/", self._page)
        app.router.add_get("/panel.css", self._page)
        app.router.add_get("/panel.js", self._page)
        app.router.add_get("/ws", self._socket)
        app.router.add_get("/preview.jpg", self._preview_jpeg)
        app.router.add_get(r"/faces/{track:\d+}.jpg", self._face_jpeg)
        # No access log: the URLs hold the token.
        site_runner = web.AppRunner(
            app, access_log=None, handle_signals=False, shutdown_timeout=1.0
        )
        await site_runner.setup()
        await web.SockSite(site_runner, self._sock).start()
        self._stats_task = asyncio.ensure_future(self._push_stats())
        return site_runner

    async def _shut(self, site_runner: web.AppRunner) -> None:
        self._stats_task.cancel()
        for client in list(self._clients):
            await client.ws.close(code=1001, message=b"the run has ended")
        await site_runner.cleanup()

    # -- HTTP --------------------------------------------------------------------------------------

    @web.middleware
    async def _guard(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[Any]]
    ) -> Any:
        """Every request carries the token, or gets 403 and nothing else."""
        given = request.query.get("token", "").encode("utf-8", "replace")
        if not hmac.compare_digest(given, self._token.encode()):
            return web.Response(status=403, text="Forbidden")
        response = await handler(request)
        response.headers.setdefault("Cache-Control", "no-store")
        response.headers.setdefault(
            "Referrer-Policy", "no-referrer"
        )  # the token stays out of Referer headers
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        return response

    async def _page(self, request: web.Request) -> web.Response:
        text = self._pages[request.path].replace("__TOKEN__", html.escape(self._token))
        headers = {
            "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; connect-src 'self'"
        }
        return web.Response(text=text, content_type=PAGE_FILES[request.path][1], headers=headers)

    async def _preview_jpeg(self, request: web.Request) -> web.Response:
        view = self._runner.view if self._runner else None
        if view is None:
            return web.Response(status=503, text="no frame yet")
        async with self._preview_lock:
            now = time.monotonic()
            cached = self._preview
            if cached is None or (cached[0] != view.index and now - cached[1] >= PREVIEW_PERIOD_S):
                body = await asyncio.get_running_loop().run_in_executor(
                    None, preview_jpeg, view.output
                )
                self._preview = cached = (view.index, now, body)
        return web.Response(body=cached[2], content_type="image/jpeg")

    async def _face_jpeg(self, request: web.Request) -> web.Response:
        view = self._runner.view if self._runner else None
        track = int(request.match_info["track"])
        face = next((f for f in view.faces if f.track_id == track), None) if view else None
        if face is None:
            return web.Response(status=404, text=f"face {track} is not in view")
        body = await asyncio.get_running_loop().run_in_executor(
            None, face_jpeg, view.image, face.box
        )
        return web.Response(body=body, content_type="image/jpeg")

    # -- the WebSocket -------------------------------------------------------------------------

    def _origin_ok(self, request: web.Request) -> bool:
        """A browser sends its page's Origin: it must be this panel's own. No Origin: not a browser
        (a script, a Stream Deck plugin), whose key is the token alone."""
        origin = request.headers.get("Origin")
        return origin is None or origin in own_origins(self.address, self.port, request.host)

    async def _socket(self, request: web.Request) -> web.StreamResponse:
        if not self._origin_ok(request):
            return web.Response(status=403, text="Forbidden")
        if len(self._clients) + self._reserved >= MAX_CLIENTS:
            return web.Response(
                status=503,
                text=f"the panel takes at most {MAX_CLIENTS} clients at once; "
                "close another page first.",
            )
        self._reserved += 1
        ws = web.WebSocketResponse(max_msg_size=MAX_FRAME, heartbeat=HEARTBEAT_S)
        try:
            await ws.prepare(request)
        finally:
            self._reserved -= 1
        client = _Client(ws)
        self._clients.add(client)
        writer = asyncio.ensure_future(self._write_answers(client))
        try:
            async for msg in ws:
                while client.answers.qsize() >= MAX_PENDING:  # a flood waits in TCP, not in memory
                    await asyncio.sleep(0.01)
                if msg.type == WSMsgType.TEXT:
                    client.answers.put_nowait(self._answer(msg.data, client))
                    if (
                        client.barrier is not None
                    ):  # a preset's lines are queued before what follows it
                        await client.barrier
                        client.barrier = None
                elif msg.type == WSMsgType.BINARY:
                    client.answers.put_nowait(
                        _now(
                            _error(
                                None,
                                "messages are JSON text, not binary; send "
                                '{"id": 1, "line": "set strength 0.5"}.',
                            )
                        )
                    )
        finally:
            self._clients.discard(client)
            client.answers.put_nowait(None)
            await asyncio.wait([writer], timeout=5)
            writer.cancel()
        return ws

    async def _write_answers(self, client: _Client) -> None:
        """Send each answer when it is ready, in the order the messages came."""
        while (pending := await client.answers.get()) is not None:
            try:
                doc = await pending
            except Exception as exc:  # noqa: BLE001 - a bug answering one message never ends the others
                log.debug("panel: an answer failed (%s)", exc)
                doc = _error(
                    None, f"the panel could not answer ({type(exc).__name__}); the run goes on."
                )
            if not await client.send(doc):
                return

    def _answer(self, text: str, client: _Client) -> Awaitable[Answer]:
        """Start answering one message (a control line is queued to the run at once, so order is kept)."""
        size = len(text.encode("utf-8", "replace"))
        if size > MAX_MESSAGE:
            return _now(
                _error(
                    None, f"the message has {size} bytes; a message is at most {MAX_MESSAGE} bytes."
                )
            )
        try:
            msg = json.loads(text)
        except ValueError as exc:
            return _now(
                _error(None, f"the message is not valid JSON ({exc.args[0] if exc.args else exc}).")
            )
        if not isinstance(msg, dict):
            return _now(
                _error(
                    None, 'a message is a JSON object, like {"id": 1, "line": "set strength 0.5"}.'
                )
            )
        ident = msg.get("id")
        try:
            return self._dispatch(ident, msg, client)
        except HenshinError as exc:
            return _now(_error(ident, str(exc)))

    def _dispatch(self, ident: Any, msg: dict[str, Any], client: _Client) -> Awaitable[Answer]:
        if "line" in msg:
            line = msg["line"]
            if not isinstance(line, str) or not line.strip() or "\n" in line or "\r" in line:
                raise OptionError("line expects one control line as text, like set strength 0.5.")
            return self._after(self._submit(line), ident)
        if "get" in msg:
            what = msg["get"]
            if what == "state":
                return self._after(self._submit(""), ident)
            if what == "controls":
                return self._after(
                    self._submit(""),
                    ident,
                    lambda state: {"controls": controls(list(state["params"]))},
                )
            if what == "view":
                return _now({"id": ident, "ok": True, "view": self._view()})
            if what == "presets":
                return _now({"id": ident, "ok": True, "presets": preset_names(self.presets)})
            raise OptionError(f"get expects one of {', '.join(GETS)}, got {what!r}.")
        if "save_preset" in msg:
            name, overwrite = msg["save_preset"], msg.get("overwrite") is True
            return self._after(
                self._submit(""), ident, lambda state: self._save(name, state, overwrite)
            )
        if "load_preset" in msg:
            preset = load_preset(self.presets, msg["load_preset"])
            client.barrier = asyncio.get_running_loop().create_future()
            return asyncio.ensure_future(self._load(ident, preset, client.barrier))
        raise OptionError(
            f"unknown message with keys {', '.join(map(str, msg)) or 'none'}; expected line, get, "
            "save_preset or load_preset."
        )

    def _submit(self, line: str) -> asyncio.Future:
        """Queue a control line to the run; the future gets (error, STATE) once it is applied."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()

        def reply(error: str | None) -> None:  # on the processing thread, between frames
            state = None if error else control_state(self._runner.stages.graph)
            loop.call_soon_threadsafe(_settle, future, (error, state))

        self._runner.command(line, reply)
        return future

    async def _after(
        self,
        pending: Awaitable[Any],
        ident: Any,
        more: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
    ) -> Answer:
        """The answer once ``pending`` (one (error, STATE), or a list of them) is settled."""
        done = await pending
        results = done if isinstance(done, list) else [done]
        error = next((e for e, _ in results if e), None)
        if error:
            return _error(ident, error)
        state = results[-1][1]
        answer = {"id": ident, "ok": True, "state": state}
        if more is not None:
            try:
                answer |= await asyncio.get_running_loop().run_in_executor(None, more, state)
            except HenshinError as exc:
                return _error(ident, str(exc))
        return answer

    async def _load(self, ident: Any, preset: dict[str, Any], queued: asyncio.Future) -> Answer:
        """Read the state between frames (routes the preset lacks go back to the default), then
        queue the preset's control lines; ``queued`` is settled once they are in the queue."""
        try:
            error, state = await self._submit("")
            futures = [] if error else [self._submit(line) for line in preset_lines(preset, state)]
        finally:
            _settle(queued, None)
        if error:
            return _error(ident, error)
        return await self._after(asyncio.gather(*futures), ident)

    def _save(self, name: Any, state: dict[str, Any], overwrite: bool) -> dict[str, Any]:
        path = save_preset(self.presets, name, state, overwrite)
        log.info("panel: preset %r saved to %s", name, path)
        return {"presets": preset_names(self.presets)}

    def _view(self) -> dict[str, Any]:
        view = self._runner.view if self._runner else None
        if view is None:
            return {"frame": None, "faces": [], "governor": 0}
        return {
            "frame": view.index,
            "governor": view.governor,
            "faces": [
                {"track": f.track_id, "box": [round(v, 1) for v in f.box]} for f in view.faces
            ],
        }

    # -- figures -----------------------------------------------------------------------------------

    async def _push_stats(self) -> None:
        """Once a second, to every client: processed fps, latency p50/p99 since the last push, faces."""
        figures = _Figures()
        while True:
            await asyncio.sleep(STATS_PERIOD_S)
            doc = figures.next(self._runner)
            for client in list(self._clients):
                await client.send(doc)


class _Client:
    """One WebSocket client: its answers in order, and one writer at a time."""

    def __init__(self, ws: web.WebSocketResponse) -> None:
        self.ws = ws
        self.answers: asyncio.Queue[Awaitable[Answer] | None] = asyncio.Queue()
        self.barrier: asyncio.Future | None = None  # read no further message until it is settled
        self._lock = asyncio.Lock()

    async def send(self, doc: dict[str, Any]) -> bool:
        """Send one JSON message; False once the client has gone."""
        async with self._lock:
            if self.ws.closed:
                return False
            try:
                await self.ws.send_str(json.dumps(doc))
            except (ConnectionError, RuntimeError):
                return False
        return True


class _Figures:
    """The stats message: figures since the previous one."""

    def __init__(self) -> None:
        self._at, self._processed, self._seen = time.perf_counter(), 0, 0

    def next(self, runner: LiveRunner | None) -> dict[str, Any]:
        now = time.perf_counter()
        stats = runner.stats if runner else None
        processed = stats.frames_processed if stats else 0
        latencies = stats.latencies_ms[self._seen :] if stats else []
        fps = (processed - self._processed) / max(now - self._at, 1e-6)
        self._at, self._processed, self._seen = now, processed, self._seen + len(latencies)
        p50, p99 = (
            (round(float(v), 1) for v in np.percentile(latencies, [50, 99]))
            if latencies
            else (None, None)
        )
        view = runner.view if runner else None
        return {
            "type": "stats",
            "fps": round(fps, 1),
            "latency_ms": {"p50": p50, "p99": p99},
            "faces": len(view.faces) if view else 0,
        }


def bind(address: PanelAddress) -> socket.socket:
    """A listening socket at ``address``, or one sentence saying why not (a port in use, a foreign host)."""
    family = socket.AF_INET6 if ":" in address.host else socket.AF_INET
    where = f"--panel {address.url()[len('http://') :]}"
    try:
        return socket.create_server((address.host, address.port), family=family)
    except socket.gaierror:
        raise OptionError(
            f"{where}: {address.host} is not a host name or address this machine knows; use "
            "127.0.0.1 (this machine only) or one of its own addresses."
        ) from None
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise OptionError(
                f"{where}: the port is in use (by another program, or another henshin); choose "
                "another port."
            ) from None
        if exc.errno == errno.EADDRNOTAVAIL:
            raise OptionError(
                f"{where}: {address.host} is not an address of this machine; use 127.0.0.1 "
                "(this machine only) or one of its own addresses."
            ) from None
        if exc.errno in (errno.EACCES, errno.EPERM):
            raise OptionError(
                f"{where}: this port needs administrator rights; choose one from 1024 up."
            ) from None
        raise OptionError(
            f"{where} cannot be opened ({exc.strerror}); choose another address or port."
        ) from None


def own_origins(address: PanelAddress, port: int, host_header: str) -> set[str]:
    """The Origins of the panel's own page: the address it listens on (and this machine's
    names for it on a loopback address). Bound to every address (0.0.0.0), the address the
    page was opened at, when it is an IP address: a DNS name could be rebound by another site."""
    origins = {address.url(port)}
    if address.loopback:
        origins |= {f"http://{name}:{port}" for name in ("localhost", "127.0.0.1", "[::1]")}
    if address.host in ("0.0.0.0", "::"):
        name = host_header.rpartition(":")[0].strip("[]") if host_header.count(":") else host_header
        if _is_ip(name) or name == "localhost":
            origins.add(f"http://{host_header}")
    return origins


def preview_jpeg(image: np.ndarray, width: int = PREVIEW_WIDTH) -> bytes:
    """The output picture for the page: at most ``width`` wide, JPEG."""
    height, full = image.shape[:2]
    if full > width:
        image = cv2.resize(
            image, (width, round(height * width / full)), interpolation=cv2.INTER_AREA
        )
    return _jpeg(image, 75)


def face_jpeg(image: np.ndarray, box: tuple[float, float, float, float]) -> bytes:
    """A square thumbnail around a face's box (a little margin), ``THUMB_SIDE`` pixels."""
    x0, y0, x1, y1 = box
    cx, cy, half = (x0 + x1) / 2, (y0 + y1) / 2, max(x1 - x0, y1 - y0) * 0.65
    h, w = image.shape[:2]
    left, top = max(int(cx - half), 0), max(int(cy - half), 0)
    right, bottom = min(int(cx + half), w), min(int(cy + half), h)
    crop = image[top:bottom, left:right] if right > left and bottom > top else image
    return _jpeg(cv2.resize(crop, (THUMB_SIDE, THUMB_SIDE), interpolation=cv2.INTER_AREA), 80)


def _jpeg(image: np.ndarray, quality: int) -> bytes:
    ok, data = cv2.imencode(
        ".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality]
    )
    return data.tobytes()


def _read_page(name: str) -> str:
    return (
        resources.files("henshin.engine").joinpath("panel_page", name).read_text(encoding="utf-8")
    )


def _is_ip(name: str) -> bool:
    try:
        socket.inet_pton(socket.AF_INET6 if ":" in name else socket.AF_INET, name)
    except OSError:
        return False
    return True


def _settle(future: asyncio.Future, result: Any) -> None:
    if not future.done():
        future.set_result(result)


def _error(ident: Any, sentence: str) -> Answer:
    return {"id": ident, "ok": False, "error": sentence}


def _now(answer: Answer) -> Awaitable[Answer]:
    future = asyncio.get_running_loop().create_future()
    future.set_result(answer)
    return future
