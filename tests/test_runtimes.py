"""Runtimes: selection, ONNX export parity, cache keys, damaged caches, the CLI options."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from references import reference_fns

from henshin import runtimes as rt
from henshin.cli.main import main
from henshin.errors import ModelError, OptionError, RuntimeUnavailableError
from henshin.nets.fns import load_transformer, transformer_net
from henshin.runtimes import NetworkSpec, RuntimeOptions, choose_runtime
from henshin.types import FaceContext
from tests.conftest import decode_video, face_box, inside

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

def _tensorrt_offered() -> bool:
    try:
        rt.providers.tensorrt_offer(rt.survey())
    except RuntimeUnavailableError:
        return False
    return True


tensorrt = pytest.mark.skipif(not _tensorrt_offered(), reason="needs a TensorRT provider of ONNX Runtime with a GPU")

# The pytorch/examples fast_neural_style TransformerNet, written out as its
# checkpoints store it: (module, in channels, out channels, kernel) per
# convolution, and the instance norms' channel counts.
OFFICIAL_CONVS = [("conv1", 3, 32, 9), ("conv2", 32, 64, 3), ("conv3", 64, 128, 3),
                  *[(f"res{i}.conv{j}", 128, 128, 3) for i in range(1, 6) for j in (1, 2)],
                  ("deconv1", 128, 64, 3), ("deconv2", 64, 32, 3), ("deconv3", 32, 3, 9)]
OFFICIAL_NORMS = [("in1", 32), ("in2", 64), ("in3", 128), *[(f"res{i}.in{j}", 128) for i in range(1, 6) for j in (1, 2)],
                  ("in4", 64), ("in5", 32)]


def official_fns_checkpoint(path: Path, seed: int = 0, stale_stats: bool = True) -> dict[str, torch.Tensor]:
    """A fast-neural-style checkpoint in the official layout with seeded random weights."""
    g = torch.Generator().manual_seed(seed)
    state: dict[str, torch.Tensor] = {}
    for name, cin, cout, k in OFFICIAL_CONVS:
        state[f"{name}.conv2d.weight"] = torch.randn(cout, cin, k, k, generator=g) * (1.0 / (cin * k * k)) ** 0.5
        state[f"{name}.conv2d.bias"] = torch.randn(cout, generator=g) * 0.1
    for name, c in OFFICIAL_NORMS:
        state[f"{name}.weight"] = 1.0 + 0.1 * torch.randn(c, generator=g)
        state[f"{name}.bias"] = 0.1 * torch.randn(c, generator=g)
        if stale_stats:  # what checkpoints saved by old torch versions carry
            state[f"{name}.running_mean"] = torch.zeros(c)
            state[f"{name}.running_var"] = torch.ones(c)
    torch.save(state, path)
    return state


@pytest.fixture(scope="module")
def fns_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("fns") / "candy.pth"
    official_fns_checkpoint(path)
    return path


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HENSHIN_HOME", str(tmp_path))
    return tmp_path


# -- selection -----------------------------------------------------------------------


def test_explicit_choices_name_what_is_missing() -> None:
    with pytest.raises(OptionError, match="ONNX graph only"):
        choose_runtime("torch", False, cuda=False)
    with pytest.raises(OptionError, match="--runtime expects one of"):
        choose_runtime("tensorflow", True)  # type: ignore[arg-type]
    assert choose_runtime("onnxruntime", True, cuda=True) == "onnxruntime"
    assert choose_runtime("torch", True, cuda=False) == "torch"
    assert choose_runtime("openvino", False, cuda=False) == "openvino"


def test_options_are_validated() -> None:
    with pytest.raises(OptionError, match="--precision"):
        RuntimeOptions(precision="int4")  # type: ignore[arg-type]
    with pytest.raises(OptionError, match="--max-batch"):
        RuntimeOptions(max_batch=0)
    with pytest.raises(OptionError, match="--compile applies to the torch runtime"):
        RuntimeOptions(runtime="onnxruntime", compile=True)
    with pytest.raises(OptionError, match="--cuda-graphs applies to the torch runtime"):
        RuntimeOptions(runtime="tensorrt", cuda_graphs=True)
    assert RuntimeOptions(runtime="auto", compile=True, cuda_graphs=True).compile  # applies if torch is chosen


def test_torch_runtime_refuses_half_precision_on_the_cpu() -> None:
    spec = NetworkSpec("tiny", (("x", (3, 8, 8)),), module=torch.nn.Conv2d(3, 3, 3))
    with pytest.raises(OptionError, match="needs a CUDA device"):
        rt.TorchRuntime(spec, RuntimeOptions(runtime="torch", device="cpu", precision="fp16"))


# -- the fast-neural-style network and its checkpoints ------------------------------------


def test_official_fns_checkpoint_loads_strictly(fns_file: Path) -> None:
    net = load_transformer(fns_file)
    want = torch.load(fns_file, weights_only=True)
    got = net.state_dict()
    assert set(got) == {k for k in want if "running_" not in k}
    for key, value in got.items():
        assert torch.equal(value, want[key]), key
    x = torch.rand(2, 3, 64, 48, generator=torch.Generator().manual_seed(3)) * 255
    with torch.no_grad():
        out = net(x)
    assert out.shape == (2, 3, 64, 48)
    # pytorch/examples' TransformerNet written from the state dict in functional ops (tests/references.py)
    torch.testing.assert_close(out, reference_fns(want, x), atol=1e-3, rtol=1e-4)


@pytest.mark.parametrize("damage", ["drop", "reshape", "extra"])
def test_wrong_fns_checkpoint_is_refused_with_the_key(tmp_path: Path, damage: str) -> None:
    path = tmp_path / "bad.pth"
    state = official_fns_checkpoint(tmp_path / "good.pth", stale_stats=False)
    if damage == "drop":
        del state["res3.conv1.conv2d.weight"]
    elif damage == "reshape":
        state["res3.conv1.conv2d.weight"] = torch.zeros(128, 128, 5, 5)
    else:
        state["res6.conv1.conv2d.weight"] = torch.zeros(1)
    torch.save(state, path)
    with pytest.raises(ModelError, match="not a fast-neural-style checkpoint.*res[36].conv1.conv2d.weight"):
        load_transformer(path)


# -- ONNX export parity and runtimes ----------------------------------------------------


def test_onnx_runtime_and_torch_runtime_match_the_reference_forward(fns_file: Path, home: Path) -> None:
    spec = NetworkSpec("fns-test", (("image", (3, 64, 64)),), module=load_transformer(fns_file))
    x = np.random.default_rng(4).random((3, 3, 64, 64), dtype=np.float32) * 255
    want = reference_fns(torch.load(fns_file, weights_only=True), torch.from_numpy(x)).numpy()
    onnx = rt.build_runtime(spec, RuntimeOptions(runtime="onnxruntime"))
    assert isinstance(onnx, rt.OnnxRuntime)
    # outputs span about -3..3 with these weights; float32 agrees to 1e-5 (measured 1.0e-5 ONNX, 8e-6 torch)
    np.testing.assert_allclose(onnx(x), want, atol=1e-4, rtol=0)
    eager = rt.build_runtime(spec, RuntimeOptions(runtime="torch", device="cpu"))
    assert isinstance(eager, rt.TorchRuntime)
    np.testing.assert_allclose(np.asarray(eager(x)), want, atol=1e-4, rtol=0)


def test_runtime_accepts_numpy_and_torch_and_keeps_the_batch(fns_file: Path, home: Path) -> None:
    spec = NetworkSpec("fns-test", (("image", (3, 32, 32)),), module=load_transformer(fns_file))
    runtime = rt.build_runtime(spec, RuntimeOptions(runtime="onnxruntime"))
    x = np.random.default_rng(1).random((5, 3, 32, 32), dtype=np.float32)
    out_np = runtime(x)
    out_t = runtime(torch.from_numpy(x))
    assert isinstance(out_np, np.ndarray) and out_np.shape == (5, 3, 32, 32)
    assert isinstance(out_t, torch.Tensor)
    np.testing.assert_allclose(out_t.numpy(), out_np, atol=1e-5)
    # Each sample is independent of the others in the batch.
    np.testing.assert_allclose(runtime(x[2:3])[0], out_np[2], atol=1e-3)


def test_fixed_batch_onnx_graph_runs_any_batch() -> None:
    from henshin.filters.style.filter import NUM_STYLES, bundled_model

    spec = NetworkSpec("multistyle26", (("image", (3, 32, 32)), ("style_weights", (NUM_STYLES,))),
                       onnx=bundled_model("multistyle26"), batched=(True, False))
    runtime = rt.build_runtime(spec, RuntimeOptions(runtime="auto"))
    x = np.random.default_rng(2).random((3, 3, 32, 32), dtype=np.float32)
    w = np.eye(NUM_STYLES, dtype=np.float32)[4]
    out = runtime(x, w)
    assert out.shape == (3, 3, 32, 32)
    np.testing.assert_allclose(out[1:2], runtime(x[1:2], w), atol=1e-5)


# -- cache keys and damaged caches --------------------------------------------------------


def test_cache_key_follows_weights_shapes_and_settings() -> None:
    torch.manual_seed(0)
    net = torch.nn.Conv2d(3, 4, 3)
    spec = NetworkSpec("n", (("x", (3, 16, 16)),), module=net)
    key = rt.cache_key(spec, precision="fp16")
    assert key == rt.cache_key(NetworkSpec("n", (("x", (3, 16, 16)),), module=net), precision="fp16")
    assert key != rt.cache_key(NetworkSpec("n", (("x", (3, 32, 16)),), module=net), precision="fp16")
    assert key != rt.cache_key(spec, precision="fp32")
    with torch.no_grad():
        net.weight[0, 0, 0, 0] += 1e-3
    assert key != rt.cache_key(spec, precision="fp16")


def _cached_export(fns_file: Path) -> tuple[NetworkSpec, RuntimeOptions, Path, bytes, Path]:
    """A small network exported into the cache: its spec, options, file, bytes and record file."""
    spec = NetworkSpec("fns-test", (("image", (3, 32, 32)),), module=load_transformer(fns_file))
    options = RuntimeOptions(runtime="onnxruntime")
    path = rt.onnx_file(spec, options)
    return spec, options, path, path.read_bytes(), path.with_name(path.name + ".json")


@pytest.mark.parametrize("damage", ["truncate", "garbage", "record", "no-record"])
def test_damaged_onnx_cache_is_rebuilt(fns_file: Path, home: Path, damage: str,
                                       caplog: pytest.LogCaptureFixture) -> None:
    spec, options, path, good, record = _cached_export(fns_file)
    if damage == "truncate":
        path.write_bytes(good[: len(good) // 2])
    elif damage == "garbage":
        path.write_bytes(b"\0" * len(good))
    elif damage == "record":
        record.write_text(record.read_text().replace('"sha256": "', '"sha256": "0'))
    else:
        record.unlink()
    with caplog.at_level(logging.WARNING, logger="henshin"):
        again = rt.onnx_file(spec, options)
    assert again == path
    assert "rebuilding" in caplog.text or "exporting it again" in caplog.text
    assert path.read_bytes() == good  # the export is deterministic: the rebuilt file is the good one
    assert rt.parity(spec, rt.OnnxRuntime(spec, options, again)) < 1e-2


def test_cached_artefact_with_other_settings_is_not_used(tmp_path: Path) -> None:
    path = tmp_path / "engine.plan"
    rt.write_cached(path, b"plan bytes", {"gpu": "A", "tensorrt": "10.3"})
    assert rt.read_cached(path, {"gpu": "A", "tensorrt": "10.3"}) == b"plan bytes"
    assert rt.read_cached(path, {"gpu": "B", "tensorrt": "10.3"}) is None
    assert not path.exists()  # a stale artefact is removed, never used



def test_cached_export_that_does_not_open_is_exported_again(fns_file: Path, home: Path,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    """A cached graph whose bytes match its record but that ONNX Runtime cannot open is made afresh when built."""
    import hashlib
    import json

    spec, options, path, good, record = _cached_export(fns_file)
    doc = json.loads(record.read_text())
    path.write_bytes(b"not a graph")
    record.write_text(json.dumps({**doc, "sha256": hashlib.sha256(b"not a graph").hexdigest()}))
    with caplog.at_level(logging.WARNING, logger="henshin"):
        runtime = rt.build_runtime(spec, options)
    assert "does not open; exporting it again" in caplog.text
    assert path.read_bytes() == good and rt.parity(spec, runtime) < 1e-2

# -- the command line ----------------------------------------------------------------------


def test_cli_runtime_errors_are_one_sentence(clip: tuple[Path, np.ndarray], tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    src, _ = clip
    if not _tensorrt_offered():
        assert main(["convert", str(src), str(tmp_path / "a.mp4"), "--runtime", "tensorrt"]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("henshin: error: --runtime tensorrt runs TensorRT through ONNX Runtime") and "\n" not in err
    with pytest.raises(OptionError, match="ONNX graph only.*--runtime onnxruntime"):
        choose_runtime("torch", has_torch_module=False)
    assert main(["convert", str(src), str(tmp_path / "c.mp4"), "--runtime", "fast"]) == 2
    assert "--runtime expects one of" in capsys.readouterr().err
    assert main(["convert", str(src), str(tmp_path / "d.mp4"), "--runtime", "onnxruntime", "--compile"]) == 2
    assert "--compile applies to the torch runtime" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())  # nothing written for a refused run


def test_default_filter_runs_under_torch_and_onnxruntime_alike(clip: tuple[Path, np.ndarray], tmp_path: Path) -> None:
    """multistyle26 as a torch module (weights read from the bundled graph) gives the bundled graph's picture."""
    src, _ = clip
    outs = {}
    for runtime in ("torch", "onnxruntime"):
        outs[runtime] = tmp_path / f"{runtime}.png"
        assert main(["-q", "convert", str(src), str(tmp_path / f"{runtime}.mp4"), "--runtime", runtime]) == 0
    a, _, _ = decode_video(tmp_path / "torch.mp4")
    b, _, _ = decode_video(tmp_path / "onnxruntime.mp4")
    assert len(a) == len(b) and np.abs(a[5].astype(int) - b[5]).mean() < 0.5


@pytest.fixture(scope="module")
def short_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from henshin.samples import SampleSpec, write_sample

    path = tmp_path_factory.mktemp("clips") / "short.mp4"
    write_sample(path, SampleSpec(width=320, height=240, frames=6, fps=24, face_height=1.3, audio=False))
    return path


def test_fns_filter_changes_the_face_alike_through_torch_and_onnxruntime(short_clip: Path, fns_file: Path,
                                                                           home: Path, tmp_path: Path) -> None:
    from henshin.engine.convert import ConvertJob, convert

    src = short_clip
    outs = {}
    for runtime in ("torch", "onnxruntime"):
        out = tmp_path / f"{runtime}.mp4"
        stats = convert(ConvertJob(src, out, filter="fns", params={"weights": str(fns_file), "size": "128"},
                                   runtime=RuntimeOptions(runtime=runtime)))  # type: ignore[arg-type]
        assert stats.frames_out == stats.frames_in == stats.frames_with_faces
        outs[runtime], _, _ = decode_video(out)
    before, _, _ = decode_video(src)
    face = inside(face_box(before[5]), before[5].shape)
    change = np.abs(outs["torch"][5].astype(int) - before[5]).max(-1)
    assert change[face].mean() > 40  # measured 115: the random network's output replaces the face
    assert change[~face].mean() < 8  # measured 4.9: the encoder's noise (as far out as 30% beyond the box)
    # both runtimes give the same pictures up to the encoder (measured 0.0: the same bytes)
    assert np.abs(outs["torch"][5].astype(int) - outs["onnxruntime"][5]).mean() < 0.5


def test_doctor_reports_what_this_machine_has(capsys: pytest.CaptureFixture[str]) -> None:
    import onnxruntime as ort
    import torch

    from henshin.runtimes.openvino_devices import openvino_devices

    assert main(["doctor"]) == 0
    lines = {line.split()[1]: line for line in capsys.readouterr().out.splitlines() if line[:2] in ("ok", "--")}
    assert lines["python"].startswith("ok") and sys.executable in lines["python"]
    assert lines["torch"].startswith("ok") and torch.__version__ in lines["torch"]
    assert lines["CUDA"].startswith("ok" if torch.cuda.is_available() else "--")
    assert lines["TensorRT"].startswith("ok" if _tensorrt_offered() else "--")
    assert lines["ONNX"].startswith("ok") and ort.__version__ in lines["ONNX"]
    assert lines["mediapipe"].startswith("ok") and "0.10.21" in lines["mediapipe"]
    assert lines["default"].startswith("ok") and "multistyle26" in lines["default"]
    # auto, written out from the machine's flags: TensorRT through ONNX Runtime where offered, else torch on a
    # GPU, else OpenVINO's CPU runtime where it is installed (and sees the CPU), else ONNX Runtime
    gpu = torch.cuda.is_available()
    openvino = any(d.startswith("CPU ") for d in openvino_devices())
    want = "tensorrt" if _tensorrt_offered() else "torch" if gpu else "openvino" if openvino else "onnxruntime"
    assert f"{want} for torch networks" in lines["--runtime"]


# -- GPU (skipped without CUDA / TensorRT) --------------------------------------------------


@cuda
@pytest.mark.gpu
@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_torch_cuda_half_precision_close_to_fp32(fns_file: Path, precision: str) -> None:
    spec = NetworkSpec("fns-test", (("image", (3, 64, 64)),), module=load_transformer(fns_file))
    runtime = rt.TorchRuntime(spec, RuntimeOptions(runtime="torch", device="cuda", precision=precision))
    # Outputs span about -2.7..2.5 with these weights (4.0 would pass anything). The module cast to fp16/bf16
    # on the CPU differs from fp32 by 0.012 / 0.081 (measured; no GPU in the session that set these): 4× that.
    assert rt.parity(spec, runtime, batch=4) < {"fp16": 0.05, "bf16": 0.35}[precision]


@cuda
@pytest.mark.gpu
def test_cuda_graphs_replay_matches_eager(fns_file: Path) -> None:
    spec = NetworkSpec("fns-test", (("image", (3, 64, 64)),), module=load_transformer(fns_file))
    graphed = rt.TorchRuntime(spec, RuntimeOptions(runtime="torch", device="cuda", precision="fp32", cuda_graphs=True))
    x = torch.rand(2, 3, 64, 64, device="cuda")
    # TF32 off on both sides: with it, channels-last and NCHW pick different conv kernels (1e-3 apart on an H100)
    with torch.backends.cudnn.flags(enabled=True, allow_tf32=False):
        first, second = graphed(x), graphed(x.flip(0))
        eager = spec.module.cuda()(x)
    assert torch.allclose(first, eager, atol=1e-3)
    assert torch.allclose(second, eager.flip(0), atol=1e-3)


@cuda
@pytest.mark.gpu
def test_torch_compile_matches_eager(fns_file: Path) -> None:
    spec = NetworkSpec("fns-test", (("image", (3, 64, 64)),), module=load_transformer(fns_file))
    compiled = rt.TorchRuntime(spec, RuntimeOptions(runtime="torch", device="cuda", precision="fp32", compile=True))
    assert rt.parity(spec, compiled, batch=2) < 0.05


@cuda
@tensorrt
@pytest.mark.gpu
def test_tensorrt_through_onnxruntime_parity_and_engine_cache(fns_file: Path, home: Path) -> None:
    spec = NetworkSpec("fns-test", (("image", (3, 64, 64)),), module=load_transformer(fns_file))
    options = RuntimeOptions(runtime="tensorrt", max_batch=4)
    engine = rt.build_runtime(spec, options)
    assert isinstance(engine, rt.OnnxRuntime) and engine.provider in ("tensorrt-rtx", "tensorrt")
    # fp16 engines: outputs span about ±2.6 here; the fp16 cast on the CPU differs by 0.012 (measured; not yet
    # measured on a GPU), so 0.1 leaves TensorRT's own kernel choices room without passing a wrong engine
    assert rt.parity(spec, engine, batch=3) < 0.1
    caches = list((home / "compiled" / "providers").glob(f"fns-test-{engine.provider}-*"))
    assert len(caches) == 1 and any(caches[0].iterdir())  # the provider wrote its engine where henshin keys it
    again = rt.build_runtime(spec, options)
    assert rt.parity(spec, again, batch=2) < 0.1


def test_transformer_net_has_the_official_parameter_names() -> None:
    names = set(transformer_net().state_dict())
    want = {f"{n}.conv2d.{p}" for n, *_ in OFFICIAL_CONVS for p in ("weight", "bias")}
    want |= {f"{n}.{p}" for n, _ in OFFICIAL_NORMS for p in ("weight", "bias")}
    assert names == want


def test_models_compile_builds_once_and_reports_parity(fns_file: Path, home: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "import", "fns-candy", str(fns_file)]) == 0
    capsys.readouterr()
    assert main(["models", "compile", "fns-candy", "--size", "64"]) == 0
    out = capsys.readouterr().out
    assert "fns-candy: onnxruntime" in out and "max abs error" in out
    error = float(out.split("max abs error")[1].split()[0])
    assert error < 1e-2
    exported = sorted((home / "compiled").glob("fns-candy-*.onnx"))
    assert len(exported) == 1
    stamp = exported[0].stat().st_mtime_ns
    assert main(["models", "compile", "fns-candy", "--size", "64"]) == 0  # found in the cache, not rebuilt
    assert exported[0].stat().st_mtime_ns == stamp
    assert main(["models", "compile", "gnr"]) == 2
    assert "no network to compile" in capsys.readouterr().err
    if not _tensorrt_offered():
        assert main(["models", "compile", "fns-candy", "--runtime", "tensorrt"]) == 2
        assert "--runtime tensorrt runs TensorRT through ONNX Runtime" in capsys.readouterr().err


def test_style_filter_serves_every_frame_size_from_one_onnxruntime_session() -> None:
    from henshin.filters.style.filter import StyleFilter, StyleParams

    filt = StyleFilter(StyleParams(scope="frame", style=3), RuntimeOptions(runtime="onnxruntime"))
    try:
        start = filt.runtime_for(256, 256)
        assert start.accepts((3, 72, 128)) and not start.accepts((1, 72, 128))
        assert filt.runtime_for(72, 128) is start
        rng = np.random.default_rng(0)
        frame = rng.random((1, 3, 70, 126), dtype=np.float32)  # [0, 1], padded to 72x128 inside
        assert filt.spec.value_range == (0.0, 1.0)
        out = filt.process(frame, [FaceContext(-1)])
        assert out.shape == frame.shape
        # the same picture a session opened for that size gives
        fresh = rt.build(
            RuntimeOptions(runtime="onnxruntime"), "multistyle26", [("image", (3, 72, 128)), ("style_weights", (26,))], onnx=filt._path,
            batched=(True, False))
        padded = np.pad(frame, ((0, 0), (0, 0), (0, 2), (0, 2)), mode="reflect")
        want = np.clip(fresh(padded, filt._weights)[:, :, :70, :126], 0, 1)
        assert np.abs(out - want).max() < 1e-5
    finally:
        filt.close()


def test_fns_filter_reuses_eager_torch_but_not_a_fixed_size_onnx_graph(fns_file: Path, home: Path) -> None:
    from henshin.filters.style.fns import FnsFilter, FnsParams

    params = FnsParams(weights=str(fns_file))
    eager = FnsFilter(params, RuntimeOptions(runtime="torch"))
    assert eager.runtime_for(64, 64) is eager.runtime_for(64, 48)  # one copy of the network
    exported = FnsFilter(params, RuntimeOptions(runtime="onnxruntime"))
    square = exported.runtime_for(64, 64)
    assert square.accepts((3, 64, 64)) and not square.accepts((3, 64, 48))
    wide = exported.runtime_for(64, 48)
    assert wide is not square and wide.accepts((3, 64, 48))
    x = np.random.default_rng(1).random((2, 3, 64, 48), dtype=np.float32) * 255
    faces = [FaceContext(0), FaceContext(1)]
    assert np.abs(exported.process(x, faces) - eager.process(x, faces)).max() < 1e-2


@pytest.mark.parametrize(("k", "cin", "cout"), [(9, 4, 3), (3, 8, 5), (5, 2, 7)])
def test_folded_convolution_is_the_convolution(k: int, cin: int, cout: int) -> None:
    """The space-to-depth twin of a k×k convolution gives the same picture on padded even-sided inputs."""
    import torch
    import torch.nn.functional as F

    from henshin.nets.multistyle import folded_weight

    g = torch.Generator().manual_seed(k)
    w, x = torch.randn(cout, cin, k, k, generator=g), torch.randn(2, cin, 20 + k - 1, 34 + k - 1, generator=g)
    want = F.conv2d(x, w)
    got = F.pixel_shuffle(F.conv2d(F.pixel_unshuffle(x, 2), folded_weight(w)), 2)
    assert got.shape == want.shape and torch.allclose(got, want, atol=1e-4)


def test_an_export_revision_makes_a_new_export(tmp_path: Path) -> None:
    """A module that computes its function with other operations (``export_revision``) is exported afresh."""
    import torch

    net = torch.nn.Conv2d(3, 3, 1)
    spec = NetworkSpec("revision-test", (("image", (3, 8, 8)),), module=net)
    options = RuntimeOptions(runtime="onnxruntime", cache_dir=tmp_path)
    first = rt.onnx_file(spec, options)
    net.export_revision = 1
    second = rt.onnx_file(spec, options)
    assert first != second and first.exists() and second.exists()


def test_multistyle26_in_torch_matches_the_bundled_graph(tmp_path: Path) -> None:
    import onnx
    import onnxruntime as ort
    import torch

    from henshin.filters.style.filter import bundled_model
    from henshin.nets.multistyle import load_multistyle

    path = bundled_model("multistyle26")
    net = load_multistyle(path)
    rng = np.random.default_rng(3)
    x = rng.random((2, 3, 64, 96), dtype=np.float32)
    styles = np.zeros(26, np.float32)
    styles[[3, 12]] = 0.5
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    want = np.concatenate([session.run(None, {"image": x[i:i + 1], "style_weights": styles})[0] for i in range(2)])
    with torch.inference_mode():
        got = net(torch.from_numpy(x), torch.from_numpy(styles)).numpy()
    assert np.abs(got - want).max() < 1e-4
    # the exported graph (fused norms, free batch and size) is the same network
    spec = NetworkSpec("multistyle-test", (("image", (3, 64, 96)), ("style_weights", (26,))), module=net,
                       batched=(True, False), free_size=True)
    graph = rt.OnnxRuntime(spec, RuntimeOptions(runtime="onnxruntime", cache_dir=tmp_path), rt.onnx_file(
        spec, RuntimeOptions(cache_dir=tmp_path)))
    assert graph.accepts((3, 40, 200)) and rt.parity(spec, graph, batch=3) < 1e-4
    # a renamed initializer is refused, naming it
    model = onnx.load(str(path))
    model.graph.initializer[0].name = "contract.0.weight"
    for node in model.graph.node:
        node.input[:] = ["contract.0.weight" if i == "contract.0.w" else i for i in node.input]
    bad = tmp_path / "bad.onnx"
    onnx.save(model, str(bad))
    with pytest.raises(ModelError, match="missing contract.0.w"):
        load_multistyle(bad)


def test_channels_last_takes_modules_with_five_dimensional_weights() -> None:
    """StyleGAN2's modulated convs keep (1, out, in, k, k) weights; Module.to(channels_last) refuses them."""
    from henshin.nets.layers import ModulatedConv2d
    from henshin.runtimes.torch_runtime import channels_last

    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Conv2d(4, 4, 1))
    net.add_module("mod", ModulatedConv2d(4, 4, 3, 8))
    channels_last(net)
    assert net[0].weight.is_contiguous(memory_format=torch.channels_last)
    assert net.mod.weight.dim() == 5 and net.mod.weight.is_contiguous()


def test_fns_without_the_onnx_package(clip: tuple[Path, np.ndarray], fns_file: Path, home: Path, tmp_path: Path,
                                      monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    import sys

    from henshin.runtimes import options

    monkeypatch.setitem(sys.modules, "onnx", None)  # `import onnx` fails, as where it is not installed
    monkeypatch.setattr(options, "_NOTED", set())
    caplog.set_level(logging.INFO, logger="henshin")
    assert choose_runtime("auto", True, cuda=False) == "torch"
    assert "pip install 'onnx" in caplog.text
    with pytest.raises(RuntimeUnavailableError, match="pip install 'onnx"):
        choose_runtime("onnxruntime", True, cuda=False)
    assert choose_runtime("onnxruntime", False, cuda=False) == "onnxruntime"  # no export needed
    src, _ = clip
    out = tmp_path / "fns.mp4"
    argv = ["-q", "convert", str(src), str(out), "--filter", "fns", "--param", f"weights={fns_file}",
            "--param", "size=64", "--max-faces", "1"]
    assert main(argv) == 0  # the default runtime falls back to eager torch
    assert out.exists()
    capsys.readouterr()
    assert main([*argv[:3], str(tmp_path / "other.mp4"), *argv[4:], "--runtime", "onnxruntime"]) == 2
    err = capsys.readouterr().err
    assert "needs the onnx package" in err and "Traceback" not in err
    assert not (tmp_path / "other.mp4").exists()


def test_a_cached_export_of_the_default_network_runs_without_importing_torch(tmp_path):
    """The style filter keys its export by the bundled file, so once exported a run needs no torch
    (importing it alone took 2.1 s of a 5 s start); the first run exports, with torch."""
    import os
    import subprocess

    code = (
        "import sys, numpy as np\n"
        "from henshin.filters.style.filter import StyleFilter, StyleParams\n"
        "from henshin.types import FaceContext\n"
        "f = StyleFilter(StyleParams())\n"
        "out = f.process(np.full((1, 3, 256, 256), 0.5, np.float32), [FaceContext(0)])\n"
        "assert out.shape == (1, 3, 256, 256)\n"
        "print('torch' in sys.modules, float(out.mean()))\n"
    )
    env = {**os.environ, "HENSHIN_HOME": str(tmp_path)}

    def run() -> tuple[bool, float]:
        done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
        imported, mean = done.stdout.split()
        return imported == "True", float(mean)

    first, second = run(), run()
    assert first[0] and not second[0]  # exported with torch, then run from the cache without it
    assert abs(first[1] - second[1]) < 1e-6  # the same graph
    assert len(list((tmp_path / "compiled").glob("multistyle26-*.onnx"))) == 1
