"""The live control panel's API: token and Origin, bad messages, order, clients, changes, presets."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import aiohttp
import numpy as np
import pytest
from panelrun import TOKEN, PanelRun, region_change, still_clip

from henshin.cli.main import main
from henshin.engine.camera import RealtimeFileSource
from henshin.engine.chains import ChainRequest, FilterGraph
from henshin.engine.live import RUN_ENDED, LiveRunner
from henshin.engine.panel import MAX_CLIENTS, own_origins
from henshin.engine.panelstate import PanelAddress, parse_address, preset_lines
from henshin.engine.sinks import NullSink
from henshin.engine.smoothing import OneEuroSmoother
from henshin.engine.stages import FaceStages
from henshin.errors import OptionError
from henshin.filters.base import check_range, describe_params, filter_class


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return still_clip(tmp_path_factory.mktemp("panel") / "still.mp4")


@pytest.fixture(scope="module")
def run(clip, tmp_path_factory):
    live = PanelRun(clip, tmp_path_factory.mktemp("config"))
    yield live
    live.stop()


def ask(run: PanelRun, *messages: dict | str, headers: dict | None = None) -> list[dict]:
    """Send messages on one connection and collect one answer each (stats pushes set aside)."""

    async def go() -> list[dict]:
        async with aiohttp.ClientSession() as session, session.ws_connect(run.ws_url, headers=headers) as ws:
            for msg in messages:
                await ws.send_str(msg if isinstance(msg, str) else json.dumps(msg))
            answers = []
            while len(answers) < len(messages):
                doc = await asyncio.wait_for(ws.receive_json(), 60)
                if doc.get("type") != "stats":
                    answers.append(doc)
            return answers

    return asyncio.run(go())


def http_status(url: str, headers: dict | None = None) -> tuple[int, str]:
    async def go() -> tuple[int, str]:
        async with aiohttp.ClientSession() as session, session.get(url, headers=headers) as response:
            return response.status, await response.text(errors="replace")

    return asyncio.run(go())


def ws_status(url: str, headers: dict | None = None) -> int:
    async def go() -> int:
        async with aiohttp.ClientSession() as session:
            try:
                async with session.ws_connect(url, headers=headers):
                    return 101
            except aiohttp.WSServerHandshakeError as exc:
                return exc.status

    return asyncio.run(go())


def test_requests_without_the_token_or_with_a_wrong_one_get_403_and_nothing_else(run):
    for path in ("/", "/panel.js", "/preview.jpg", "/nowhere", "/ws"):
        assert http_status(run.base + path) == (403, "Forbidden")
        assert http_status(f"{run.base}{path}?token=wrong-token") == (403, "Forbidden")
    assert ws_status(f"{run.base}/ws") == 403
    assert ws_status(f"{run.base}/ws?token={TOKEN}x") == 403
    status, page = http_status(f"{run.base}/?token={TOKEN}")
    assert status == 200 and "<title>henshin panel</title>" in page


def test_a_websocket_from_another_site_is_refused(run):
    own = f"http://127.0.0.1:{run.panel.port}"
    assert ws_status(run.ws_url, {"Origin": "http://evil.example"}) == 403
    assert ws_status(run.ws_url, {"Origin": f"http://127.0.0.1:{run.panel.port + 1}"}) == 403
    assert ws_status(run.ws_url, {"Origin": own}) == 101
    assert ws_status(run.ws_url, {"Origin": f"http://localhost:{run.panel.port}"}) == 101


def test_malformed_oversized_and_unknown_messages_are_answered_and_the_run_goes_on(run):
    before = run.runner.stats.frames_processed
    bad = ["{not json", "x" * (65 * 1024), json.dumps({"id": 1, "line": "set strength " + "9" * 70000}), "[1, 2]",
           {"id": 2, "dance": True}, {"id": 3, "get": "everything"}, {"id": 4, "line": "dance"},
           {"id": 5, "line": "set strength 7"}, {"id": 6, "line": ""}, {"id": 7, "line": 3},
           {"id": 8, "line": "set style 99"}, {"id": 9, "load_preset": "../../etc/passwd"}]
    answers = ask(run, *bad, {"id": 10, "get": "state"})
    for answer in answers[:-1]:
        assert answer["ok"] is False and answer["error"].endswith(".") and "\n" not in answer["error"], answer
    assert [a["id"] for a in answers] == [None, None, None, None, 2, 3, 4, 5, 6, 7, 8, 9, 10]
    assert "not valid JSON" in answers[0]["error"] and "at most 65536 bytes" in answers[1]["error"]
    assert "unknown control command" in answers[6]["error"]
    assert "expects a value from 0 to 1, got 7" in answers[7]["error"]
    assert answers[-1]["ok"] is True and answers[-1]["state"]["chain"] == "style"
    run.recorder.next_frames(2)
    assert run.runner.stats.frames_processed > before and not run.runner.stats.end_reason


def test_two_hundred_commands_in_a_burst_are_all_answered_in_order(run):
    lines = [{"id": i, "line": f"set strength {(i % 100) / 100:.2f}"} for i in range(200)]
    answers = ask(run, *lines)
    assert [a["id"] for a in answers] == list(range(200))
    assert all(a["ok"] for a in answers)
    # each answer carries the state right after its own line
    assert [a["state"]["params"]["style"]["strength"] for a in answers] == [(i % 100) / 100 for i in range(200)]
    ask(run, {"id": 0, "line": "set strength 1"})


def test_a_ninth_client_is_refused(run):
    async def go() -> tuple[int, int]:
        async with aiohttp.ClientSession() as session:
            sockets = [await session.ws_connect(run.ws_url) for _ in range(MAX_CLIENTS)]
            try:
                await session.ws_connect(run.ws_url)
                ninth = 101
            except aiohttp.WSServerHandshakeError as exc:
                ninth = exc.status
            await sockets[0].close()
            await asyncio.sleep(0.2)
            async with session.ws_connect(run.ws_url) as again:  # a place is free again
                await again.send_str(json.dumps({"id": 1, "get": "view"}))
                answer = await again.receive_json()
                while answer.get("type") == "stats":
                    answer = await again.receive_json()
            for ws in sockets[1:]:
                await ws.close()
            return ninth, answer["ok"]

    assert asyncio.run(go()) == (503, True)


def test_each_change_shows_in_state_and_in_a_recorded_frame(run):
    boxes = run.wait_for_faces(2)
    original = _still_frame(run)
    styled = run.recorder.next_frames(3)
    assert all(region_change(styled, original, box) > 8 for box in boxes.values())

    (answer,) = ask(run, {"id": 1, "line": "set strength 0"})
    assert answer["state"]["params"]["style"]["strength"] == 0.0
    plain = run.recorder.next_frames(3)
    assert all(region_change(plain, original, box) < 1.5 for box in boxes.values())  # strength 0: the input

    (answer,) = ask(run, {"id": 2, "line": "set strength 1"}, )
    (answer,) = ask(run, {"id": 3, "line": "set style 7"})
    assert answer["state"]["params"]["style"]["style"] == 7
    restyled = run.recorder.next_frames(3)
    assert all(region_change(restyled, styled[-1], box) > 8 for box in boxes.values())

    (answer,) = ask(run, {"id": 4, "line": "face 1 tint"})
    assert answer["state"]["faces"] == {"1": "tint"} and "tint" in answer["state"]["params"]
    tinted = run.recorder.next_frames(3)
    # face 1 now only has its lips coloured; face 0 keeps style 7
    assert region_change(tinted, original, boxes[1]) < 0.5 * region_change(restyled, original, boxes[1])
    assert region_change(tinted, restyled[-1], boxes[0]) < 3
    ask(run, {"id": 5, "line": "face 1 default"}, {"id": 6, "line": "set style 0"})


def test_stats_are_pushed_once_a_second_in_the_documented_form(run):
    async def go() -> list[dict]:
        async with aiohttp.ClientSession() as session, session.ws_connect(run.ws_url) as ws:
            start = time.monotonic()
            docs = [await asyncio.wait_for(ws.receive_json(), 5) for _ in range(3)]
            return docs, time.monotonic() - start

    docs, took = asyncio.run(go())
    assert 1.5 < took < 6  # three pushes, one a second (loose: the machine may be busy)
    for doc in docs:
        assert set(doc) == {"type", "fps", "latency_ms", "faces"} and doc["type"] == "stats"
        assert set(doc["latency_ms"]) == {"p50", "p99"}
        assert TOKEN not in json.dumps(doc)
    assert docs[-1]["fps"] > 0 and docs[-1]["faces"] == 2
    assert 0 < docs[-1]["latency_ms"]["p50"] <= docs[-1]["latency_ms"]["p99"]


def test_presets_are_saved_to_the_config_folder_and_loaded_through_control_lines(run):
    ask(run, {"id": 1, "line": "set strength 0.3"}, {"id": 2, "line": "face 0 tint"})
    (saved,) = ask(run, {"id": 3, "save_preset": "calm"})
    assert saved["ok"] and saved["presets"] == ["calm"]
    path = run.panel.presets / "calm.json"
    doc = json.loads(path.read_text())
    assert doc["params"]["style"]["strength"] == 0.3 and doc["faces"] == {"0": "tint"}
    (again,) = ask(run, {"id": 4, "save_preset": "calm"})
    assert not again["ok"] and "exists already" in again["error"]
    answers = ask(run, {"id": 5, "line": "set strength 0.9"}, {"id": 6, "line": "face 0 default"},
                  {"id": 7, "line": "face 1 warp"}, {"id": 8, "load_preset": "calm"})
    state = answers[-1]["state"]
    assert answers[-1]["ok"] and state["params"]["style"]["strength"] == 0.3
    assert state["faces"] == {"0": "tint"}  # face 1's route, absent from the preset, went back to the default
    (over,) = ask(run, {"id": 9, "save_preset": "calm", "overwrite": True})
    assert over["ok"] and not list(path.parent.glob(".*partial*"))
    ask(run, {"id": 10, "line": "face 0 default"}, {"id": 11, "line": "set strength 1"})


def _still_frame(run: PanelRun) -> np.ndarray:
    return run.runner.view.image.copy()


def test_a_command_after_the_run_has_ended_is_answered_at_once(clip):
    graph = FilterGraph(ChainRequest("tint"))
    runner = LiveRunner(RealtimeFileSource(clip), FaceStages(graph, OneEuroSmoother()), [NullSink()])
    answers = []
    runner.command("set strength 0.5", answers.append)  # applied before the first frame
    runner.command("set strength 5", answers.append)
    try:
        runner.run()
    finally:
        graph.close()
    runner.command("set strength 0.2", answers.append)
    assert answers[0] is None and "expects a value from 0 to 1" in answers[1] and answers[2] == RUN_ENDED
    assert graph.current("strength") == 0.5


# -- without a run ---------------------------------------------------------------------------------


def test_addresses_and_origins():
    assert parse_address("8765") == PanelAddress("127.0.0.1", 8765)
    assert parse_address("0.0.0.0:80") == PanelAddress("0.0.0.0", 80)
    assert parse_address("[::1]:9000") == PanelAddress("::1", 9000)
    assert parse_address("[::1]:9000").loopback and not parse_address("192.168.1.4:1").loopback
    for bad in ("http", ":8000", "1:99999", "host:port"):
        with pytest.raises(OptionError, match="--panel"):
            parse_address(bad)
    address = PanelAddress("0.0.0.0", 8765)
    assert "http://192.168.1.4:8765" in own_origins(address, 8765, "192.168.1.4:8765")
    assert "http://attacker.example:8765" not in own_origins(address, 8765, "attacker.example:8765")


@dataclass(frozen=True)
class NamedParams:
    look: int = field(default=0, metadata={"choices": ["ink", "fire", "ice"]})
    mode: Literal["soft", "hard"] = "soft"
    amount: float = 0.5
    label: str = ""

    def __post_init__(self) -> None:
        check_range("look", self.look, 0, 2)
        check_range("amount", self.amount, 0.0, 2.0)


def test_controls_come_from_the_params_dataclass():
    look, mode, amount, label = describe_params(NamedParams)
    assert look == {"name": "look", "kind": "int", "default": 0, "choices": ["ink", "fire", "ice"], "range": [0, 2]}
    assert mode == {"name": "mode", "kind": "choice", "default": "soft", "choices": ["soft", "hard"]}
    assert amount == {"name": "amount", "kind": "float", "default": 0.5, "range": [0.0, 2.0]}
    assert label == {"name": "label", "kind": "text", "default": ""}
    # the ranges are the ones the filter checks
    strength = next(p for p in describe_params(filter_class("tint").Params) if p["name"] == "strength")
    assert strength["range"] == [0.0, 1.0]


def test_preset_lines_restore_a_state():
    preset = {"chain": "warp+style", "enabled": False, "faces": {"2": "tint"},
              "params": {"style": {"style": 3, "blend": "", "style_image": "/my pics/a.png"},
                         "warp": {"strength": 0.5}, "tint": {"color": "#112233"}, "composite": {"feather": 0.1}}}
    lines = preset_lines(preset, {"faces": {"1": "warp"}})
    assert lines == ["filter warp+style warp.strength=0.5 style.style=3 style.blend=", "face 2 tint",
                     "face 1 default", "set tint.color #112233", "set composite.feather 0.1", "off"]


def test_a_port_in_use_is_one_sentence_before_the_camera_opens(capsys):
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        code = main(["-q", "live", "--source", "9", "--sink", "null", "--panel", f"127.0.0.1:{port}"])
    err = capsys.readouterr().err
    assert code == 2 and "the port is in use" in err and f"127.0.0.1:{port}" in err
    assert "camera 9" not in err and "Traceback" not in err and err.count("\n") == 1


def test_the_command_prints_the_link_and_closing_the_run_closes_the_server(clip, tmp_path):
    token = "env-token-4567"
    stats = tmp_path / "stats.json"
    env = dict(os.environ, HENSHIN_PANEL_TOKEN=token, HENSHIN_CONFIG=str(tmp_path))
    proc = subprocess.Popen([sys.executable, "-m", "henshin.cli.main", "live", "--source", str(clip), "--loop",
                             "--sink", "null", "--filter", "tint", "--max-frames", "60", "--stats", str(stats),
                             "--panel", "0"], stderr=subprocess.PIPE, text=True, env=env)
    try:
        first, before = "", []
        while "control panel at" not in first:
            first = proc.stderr.readline()
            assert first, "the run ended before printing the panel's link"
            before.append(first)
        url = first.split("control panel at ", 1)[1].strip()
        assert url.startswith("http://127.0.0.1:") and url.endswith(f"/?token={token}")
        base = url.split("/?")[0]
        assert http_status(url)[0] == 200
        rest = proc.stderr.read()
        assert proc.wait(timeout=60) == 0
    finally:
        proc.kill()
    assert "".join(before + [rest]).count(token) == 1  # the link, and nowhere else
    assert token not in stats.read_text()
    with pytest.raises(aiohttp.ClientConnectionError):
        http_status(url)
    assert base


def test_a_host_other_machines_reach_is_warned_about(clip, caplog, monkeypatch, tmp_path):
    monkeypatch.setenv("HENSHIN_CONFIG", str(tmp_path))
    monkeypatch.setattr("sys.stdin", None)
    assert main(["live", "--source", str(clip), "--sink", "null", "--filter", "tint", "--max-frames", "3",
                 "--panel", "0.0.0.0:0"]) == 0
    assert "other machines can reach" in caplog.text
