"""The student networks through every runtime that runs here (ONNX Runtime's CPU provider, OpenVINO), fp32
against eager torch and int8 within its bound; OpenVINO's precisions kept or refused; `--filter student`
on OpenVINO end to end."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from henshin import runtimes as rt
from henshin.cli.main import main
from henshin.errors import OptionError
from henshin.filters.networks import calibration_faces
from henshin.nets.student import SIZES, Student, StudentConfig
from henshin.runtimes import NetworkSpec, RuntimeOptions, quantize
from henshin.runtimes import openvino_devices as devices
from tests.conftest import decode_video

pytest.importorskip("onnx")
needs_openvino = pytest.mark.skipif(
    not rt.has_module("openvino"), reason="needs OpenVINO (pip install 'henshin[openvino]')"
)
SIZE = 64  # crop side under test: the networks as released, at a small crop
RUNTIMES = ["onnxruntime", pytest.param("openvino", marks=needs_openvino)]


def student(config: StudentConfig, seed: int = 0) -> Student:
    """A seeded student whose output is not its input: the residual head starts at zero when trained."""
    torch.manual_seed(seed)
    net = Student(config).eval()
    with torch.no_grad():
        torch.nn.init.normal_(net.head.weight, std=0.05)
        net.head.bias.uniform_(-0.2, 0.2)
    return net


def _crops() -> list[tuple[np.ndarray]]:
    return [(crop,) for crop in calibration_faces(SIZE, SIZE)]


def _spec(size: str) -> NetworkSpec:
    return NetworkSpec(
        f"student-{size}",
        (("image", (3, SIZE, SIZE)),),
        module=student(SIZES[size]),
        calibration=_crops,
    )


def _options(runtime: str, tmp_path: Path, **changes: object) -> RuntimeOptions:
    provider = {"provider": "cpu"} if runtime == "onnxruntime" else {}
    return RuntimeOptions(runtime=runtime, cache_dir=tmp_path, threads=1, **provider, **changes)  # type: ignore[arg-type]


def _psnr(want: np.ndarray, got: np.ndarray) -> float:
    mse = max(float(((want.astype(np.float64) - got) ** 2).mean()), 1e-20)
    return float(10 * np.log10(float(want.max() - want.min()) ** 2 / mse))


def _eager(spec: NetworkSpec, x: np.ndarray) -> np.ndarray:
    with torch.inference_mode():
        return spec.module(torch.from_numpy(x)).numpy()


# -- fp32 against eager torch -------------------------------------------------------------------------


@pytest.mark.parametrize("runtime", RUNTIMES)
@pytest.mark.parametrize("size", ["small", "medium", "large"])
def test_student_matches_eager_torch(runtime: str, size: str, tmp_path: Path) -> None:
    spec = _spec(size)
    built = rt.build_runtime(spec, _options(runtime, tmp_path))
    assert built.name == runtime and getattr(built, "precision", "fp32") == "fp32"
    assert rt.parity(spec, built, batch=3) < 1e-4  # outputs in [0, 1]: well under an 8-bit level


# -- int8: the quantized graph, run by each runtime ----------------------------------------------------


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_int8_student_stays_within_its_bound_of_eager_fp32(
    runtime: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    spec = _spec("small")
    with caplog.at_level(logging.INFO, logger="henshin"):
        built = rt.build_runtime(spec, _options(runtime, tmp_path, precision="int8"))
    verdict = next(
        m for m in caplog.messages if m.startswith(f"int8 for student-small on {runtime}:")
    )
    assert built.precision == ("int8" if "running int8" in verdict else "fp32")
    for (crop,) in _crops()[-2:]:  # face crops; the first half calibrated
        assert _psnr(_eager(spec, crop), built(crop)) >= quantize.MIN_PSNR_DB


@pytest.mark.parametrize("runtime", RUNTIMES)
@pytest.mark.parametrize("faster", [True, False])
def test_int8_runs_only_when_its_verdict_keeps_it(
    runtime: str, faster: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The verdict's timing is faked (this machine's speed is not a test's business); the graphs are real."""
    real = quantize._compare

    def timed(*args: object) -> dict[str, float]:
        doc = real(*args)
        return {**doc, "fp32_ms": 10.0, "int8_ms": 5.0 if faster else 20.0}

    monkeypatch.setattr(quantize, "_compare", timed)
    spec = _spec("small")
    fp32 = rt.build_runtime(spec, _options(runtime, tmp_path))
    int8 = rt.build_runtime(spec, _options(runtime, tmp_path, precision="int8"))
    crop = _crops()[-1][0]
    assert int8.precision == ("int8" if faster else "fp32")
    if faster:  # the quantized graph runs: close to fp32, not the same
        assert quantize.MIN_PSNR_DB <= _psnr(fp32(crop), int8(crop)) < 100
    else:
        np.testing.assert_array_equal(int8(crop), fp32(crop))


@needs_openvino
def test_the_int8_graph_is_shared_and_each_runtime_keeps_its_own_verdict(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = _spec("small")
    rt.build_runtime(spec, _options("openvino", tmp_path, precision="int8"))
    calls: list[str] = []
    real_quantize, real_compare = quantize._quantize, quantize._compare
    monkeypatch.setattr(
        quantize, "_quantize", lambda *a: calls.append("quantize") or real_quantize(*a)
    )
    monkeypatch.setattr(
        quantize, "_compare", lambda *a: calls.append("compare") or real_compare(*a)
    )
    rt.build_runtime(spec, _options("openvino", tmp_path, precision="int8"))
    assert calls == []  # OpenVINO's verdict and the graph were cached
    rt.build_runtime(spec, _options("onnxruntime", tmp_path, precision="int8"))
    assert calls == ["compare"]  # the same graph, judged again as ONNX Runtime runs it
    assert len(list(tmp_path.glob("student-small-*-int8.onnx"))) == 1


@needs_openvino
def test_openvino_and_onnxruntime_run_the_same_int8_graph_alike(tmp_path: Path) -> None:
    """One quantized graph serves both; each runtime rounds int8 its own way, within the int8 bound."""
    spec = _spec("medium")
    fp32 = rt.onnx_file(spec, _options("openvino", tmp_path))
    graph = quantize._quantize(spec, fp32, _crops()[:4])
    path = tmp_path / "medium-int8.onnx"
    path.write_bytes(graph)
    options = _options("openvino", tmp_path, precision="int8")
    runners = [quantize._runner(r, path, options) for r in ("onnxruntime", "openvino")]
    for (crop,) in _crops()[4:]:
        want = _eager(spec, crop)
        ort_out, ov_out = (run({"image": crop}) for run in runners)
        assert (
            _psnr(want, ort_out) >= quantize.MIN_PSNR_DB
            and _psnr(want, ov_out) >= quantize.MIN_PSNR_DB
        )
        assert _psnr(ort_out, ov_out) >= quantize.MIN_PSNR_DB


# -- OpenVINO's precisions: refused where the device lacks them -------------------------------------


class FakeCore:
    """An OpenVINO core with one CPU that lists ``caps``."""

    def __init__(self, caps: list[str]) -> None:
        self.available_devices = ["CPU"]
        self._caps = caps

    def get_property(self, device: str, name: str) -> object:
        return {"OPTIMIZATION_CAPABILITIES": self._caps, "FULL_DEVICE_NAME": "Fake CPU"}[name]


@needs_openvino
def test_bf16_and_int8_are_taken_where_the_cpu_lists_them(monkeypatch: pytest.MonkeyPatch) -> None:
    from henshin.runtimes.openvino_runtime import compile_config

    monkeypatch.setattr(devices, "core", lambda: FakeCore(["FP32", "BF16", "INT8"]))
    assert devices.openvino_device("cpu", "bf16") == ("CPU", "bf16")
    assert devices.openvino_device(None, "int8") == ("CPU", "int8")
    assert compile_config("CPU", "bf16", 2)["INFERENCE_PRECISION_HINT"] == "bf16"
    # the int8 graph's own Q/DQ pairs make it int8; what they leave stays fp32 even where bf16 would run
    assert compile_config("CPU", "int8", 2)["INFERENCE_PRECISION_HINT"] == "f32"


@needs_openvino
def test_precisions_the_cpu_lacks_are_one_sentence_naming_the_hardware(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(devices, "core", lambda: FakeCore(["FP32"]))
    with pytest.raises(
        OptionError, match="needs a CPU with AVX-512 BF16 or AMX .*use --precision fp32\\.$"
    ):
        rt.check_available(RuntimeOptions(runtime="openvino", precision="bf16"))
    with pytest.raises(OptionError, match="--precision int8 on OpenVINO needs a CPU with AVX2"):
        rt.check_available(RuntimeOptions(runtime="openvino", precision="int8"))


@needs_openvino
def test_bf16_on_this_cpu_is_refused_before_any_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Asked for bf16, OpenVINO on a CPU without AVX-512 BF16 or AMX compiles fp32 without a word: refused."""
    if "BF16" in devices.core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
        pytest.skip("this CPU runs bf16")
    src, out = tmp_path / "in.mp4", tmp_path / "out.mp4"
    assert (
        main(["-q", "sample", str(src), "--width", "160", "--height", "120", "--frames", "2"]) == 0
    )
    capsys.readouterr()
    assert (
        main(["convert", str(src), str(out), "--runtime", "openvino", "--precision", "bf16"]) == 2
    )
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert "--precision bf16 on OpenVINO needs a CPU with AVX-512 BF16 or AMX" in err
    assert not out.exists()


# -- --filter student through OpenVINO, end to end ---------------------------------------------------


def _stored_student(folder: Path) -> Path:
    """A student folder as `henshin distill` stores it (graph, weights, metadata), with seeded weights."""
    from henshin.distill.export import onnx_bytes, weights_bytes
    from henshin.filters.student.model import META_FILE, ONNX_FILE, WEIGHTS_FILE, StudentMeta

    net = student(SIZES["small"], seed=1)
    meta = StudentMeta(size=SIZE, student="small", network=SIZES["small"].to_json())
    folder.mkdir()
    (folder / ONNX_FILE).write_bytes(onnx_bytes(net, SIZE, meta))
    (folder / WEIGHTS_FILE).write_bytes(weights_bytes(net, meta))
    (folder / META_FILE).write_text(meta.to_json())
    return folder


@needs_openvino
def test_student_filter_runs_on_openvino_like_onnxruntime(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """fp32 on both runtimes, and int8 on OpenVINO (its check's timing faked to keep it: a 64 px student
    on this machine is no faster in int8, and the int8 path through the filter is what is under test)."""
    real = quantize._compare
    monkeypatch.setattr(
        quantize, "_compare", lambda *a: {**real(*a), "fp32_ms": 10.0, "int8_ms": 5.0}
    )
    monkeypatch.setenv("HENSHIN_HOME", str(tmp_path / "home"))  # compiled models and verdicts
    model = _stored_student(tmp_path / "seeded")
    src = tmp_path / "in.mp4"
    assert (
        main(["-q", "sample", str(src), "--width", "320", "--height", "240", "--frames", "8"]) == 0
    )
    runs = {"openvino": [], "onnxruntime": [], "openvino-int8": ["--precision", "int8"]}
    with caplog.at_level(logging.INFO, logger="henshin"):
        for name, extra in runs.items():
            runtime = name.partition("-")[0]
            argv = ["convert", str(src), str(tmp_path / f"{name}.mp4"), "--filter", "student"]
            assert main([*argv, "--param", f"model={model}", "--runtime", runtime, *extra]) == 0
    assert any(
        m.startswith("runtime for student-") and ": openvino (CPU, fp32" in m
        for m in caplog.messages
    )
    assert any(
        m.startswith("runtime for student-") and ": openvino (CPU, int8" in m
        for m in caplog.messages
    )
    frames = {name: decode_video(tmp_path / f"{name}.mp4")[0] for name in runs}
    original = decode_video(src)[0]
    assert all(len(f) == len(original) == 8 for f in frames.values())
    ov, ort_, int8 = (frames[n][4].astype(int) for n in runs)
    assert np.abs(ov - ort_).mean() < 0.5  # the same picture, to H.264's rounding
    assert 0 < np.abs(int8 - ov).mean() < 1.0  # int8: another picture, within a level
    assert np.abs(ov - original[4]).mean() > 1  # and a filtered one
