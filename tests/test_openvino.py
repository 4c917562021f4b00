"""--runtime openvino: every network against eager torch fp32, its compiled-model cache, a conversion end to end."""

from __future__ import annotations

import importlib
import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from henshin import runtimes as rt
from henshin.cli.main import main
from henshin.errors import OptionError, RuntimeUnavailableError
from henshin.runtimes import NetworkSpec, RuntimeOptions
from tests.conftest import decode_video
from tests.test_runtimes import official_fns_checkpoint

pytest.importorskip("openvino", reason="needs OpenVINO (pip install 'henshin[openvino]')")


def _openvino(tmp_path: Path, **changes: object) -> RuntimeOptions:
    return RuntimeOptions(runtime="openvino", cache_dir=tmp_path, **changes)  # type: ignore[arg-type]


def _check(
    spec: NetworkSpec, tmp_path: Path, tolerance: float, batch: int = 2
) -> rt.OpenVinoRuntime:
    runtime = rt.build_runtime(spec, _openvino(tmp_path))
    assert isinstance(runtime, rt.OpenVinoRuntime) and runtime.precision == "fp32"
    err = rt.parity(spec, runtime, batch=batch)
    assert err < tolerance, err
    return runtime


# -- every network against eager torch fp32 ---------------------------------------------------------


def test_fast_neural_style_matches_eager_torch(tmp_path: Path) -> None:
    from henshin.nets.fns import load_transformer

    official_fns_checkpoint(tmp_path / "candy.pth")
    spec = NetworkSpec(
        "fns-test", (("image", (3, 64, 64)),), module=load_transformer(tmp_path / "candy.pth")
    )
    _check(spec, tmp_path, 1e-2, batch=3)  # outputs span 0..255


def test_multistyle26_matches_eager_torch_at_any_size(tmp_path: Path) -> None:
    from henshin.filters.style import NUM_STYLES, bundled_model
    from henshin.nets.multistyle import load_multistyle

    net = load_multistyle(bundled_model("multistyle26"))
    spec = NetworkSpec(
        "multistyle-test",
        (("image", (3, 64, 96)), ("style_weights", (NUM_STYLES,))),
        module=net,
        batched=(True, False),
        free_size=True,
    )
    runtime = _check(spec, tmp_path, 1e-3, batch=3)  # [0, 1] out: a quarter of an 8-bit level
    assert runtime.accepts((3, 40, 200))  # one compiled model serves every frame size
    wide = NetworkSpec(
        "multistyle-test",
        (("image", (3, 40, 200)), ("style_weights", (NUM_STYLES,))),
        module=net,
        batched=(True, False),
        free_size=True,
    )
    assert rt.parity(wide, runtime, batch=1) < 1e-3


@pytest.mark.parametrize(
    ("name", "mean", "top"),
    [("arbitrary_predict", 0.02, 0.045), ("arbitrary_transform", 0.03, 0.4)],
)
def test_arbitrary_style_graphs_match_onnxruntime(
    tmp_path: Path, name: str, mean: float, top: float
) -> None:
    """The two bundled int8 (QDQ) graphs have no torch twin: ONNX Runtime's CPU provider is the reference.

    OpenVINO rounds int8 its own way: the style vector (steps of 0.0199) is at most two
    steps off; the picture (steps of 1/256) about 4 levels on average (measured 0.016).
    """
    from henshin.filters.style import bundled_model
    from henshin.filters.style.arbitrary import VECTOR_SHAPE

    path = bundled_model(name)
    if name == "arbitrary_predict":
        spec = NetworkSpec(name, (("style_image", (256, 256, 3)),), onnx=path)
        inputs = [np.random.default_rng(0).random((1, 256, 256, 3), dtype=np.float32)]
    else:
        spec = NetworkSpec(
            name,
            (("content_image", (384, 384, 3)), ("style_vector", VECTOR_SHAPE)),
            onnx=path,
            batched=(True, False),
        )
        rng = np.random.default_rng(1)
        inputs = [
            rng.random((1, 384, 384, 3), dtype=np.float32),
            rng.random(VECTOR_SHAPE, dtype=np.float32),
        ]
    want = rt.build_runtime(spec, RuntimeOptions(runtime="onnxruntime", cache_dir=tmp_path))(
        *inputs
    )
    got = rt.build_runtime(spec, _openvino(tmp_path))(*inputs)
    diff = np.abs(got - want)
    assert got.shape == want.shape and diff.mean() < mean and diff.max() < top, (
        diff.mean(),
        diff.max(),
    )


def test_gans_n_roses_matches_eager_torch(gnr_training_file: Path, tmp_path: Path) -> None:
    from henshin.nets.gnr import load_gnr

    spec = NetworkSpec(
        "gnr-test", (("image", (3, 256, 256)), ("style", (8,))), module=load_gnr(gnr_training_file)
    )
    _check(spec, tmp_path, 1e-3)


def test_stylegan2_synthesis_matches_eager_torch(narrow_generator: Path, tmp_path: Path) -> None:
    from henshin.filters.latent.networks import Synthesis
    from henshin.nets.stylegan2 import load_generator

    generator = load_generator(narrow_generator)
    spec = NetworkSpec(
        "stylegan2-test",
        (("w_plus", (generator.n_latent, generator.style_dim)),),
        module=Synthesis(generator, generator.size).eval(),
    )
    _check(spec, tmp_path, 1e-3)


def test_e4e_encoder_matches_eager_torch(e4e_narrow: Path, tmp_path: Path) -> None:
    from henshin.nets.e4e import load_encoder

    spec = NetworkSpec("e4e-test", (("image", (3, 256, 256)),), module=load_encoder(e4e_narrow))
    _check(spec, tmp_path, 1e-3)


# -- the compiled-model cache -----------------------------------------------------------------------


def _tiny(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(8, 3, 1)
    )


def test_compiled_model_is_reused_on_the_second_run_and_rebuilt_when_the_network_changes(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    net = _tiny(0)
    spec = NetworkSpec("tiny", (("x", (3, 16, 16)),), module=net)
    caplog.set_level(logging.INFO, logger="henshin")
    first = rt.build_runtime(spec, _openvino(tmp_path))
    assert (
        not first.from_cache
        and first.blob_path.exists()
        and "compiling tiny with OpenVINO" in caplog.text
    )
    caplog.clear()
    second = rt.build_runtime(spec, _openvino(tmp_path))
    assert (
        second.from_cache and second.blob_path == first.blob_path and "compiling" not in caplog.text
    )
    assert rt.parity(spec, second) < 1e-5
    with torch.no_grad():
        net[0].weight[0, 0, 0, 0] += 0.5  # the network changes: a new key, compiled afresh
    changed = rt.build_runtime(spec, _openvino(tmp_path))
    assert not changed.from_cache and changed.blob_path != first.blob_path
    assert rt.parity(spec, changed) < 1e-5  # the new weights, not the cached ones


def test_a_damaged_compiled_model_is_rebuilt_never_used(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    spec = NetworkSpec("tiny", (("x", (3, 16, 16)),), module=_tiny(1))
    blob = rt.build_runtime(spec, _openvino(tmp_path)).blob_path
    blob.write_bytes(blob.read_bytes()[:200])
    with caplog.at_level(logging.WARNING, logger="henshin"):
        again = rt.build_runtime(spec, _openvino(tmp_path))
    assert not again.from_cache and "does not match its record" in caplog.text
    assert rt.parity(spec, again) < 1e-5


def test_free_dimensions_are_compiled_fixed_once_per_shape_and_cached(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A free-size graph runs as fixed-shape models, one per set of input shapes, each cached on disk."""
    spec = NetworkSpec("tiny", (("x", (3, 16, 16)),), module=_tiny(2), free_size=True)
    caplog.set_level(logging.INFO, logger="henshin")
    runtime = rt.build_runtime(spec, _openvino(tmp_path))
    assert runtime.shaped and "at 1x3x16x16" in caplog.text  # the built size, compiled at start
    small, wide = np.zeros((1, 3, 16, 16), np.float32), np.zeros((1, 3, 8, 24), np.float32)
    first = runtime.request_for([small])
    assert runtime.request_for([small]) is first and runtime.request_for([wide]) is not first
    for request in (first, runtime.request_for([wide])):
        assert all(port.get_partial_shape().is_static for port in request.get_compiled_model().inputs)
    with torch.no_grad():
        x = torch.rand(2, 3, 8, 24)
        assert np.abs(runtime(x.numpy()) - spec.module(x).numpy()).max() < 1e-5
    # A batch runs face by face on the batch-1 model: each face's bytes whatever shares its call.
    assert np.array_equal(runtime(x.numpy())[1:], runtime(x.numpy()[1:]))
    caplog.clear()
    again = rt.build_runtime(spec, _openvino(tmp_path))  # a second run: both shapes from the cache
    again.request_for([wide])
    assert again.from_cache and "compiling" not in caplog.text
    assert len(list(tmp_path.glob("tiny-*.openvino"))) == 2


def test_the_last_few_shapes_stay_compiled_fewer_when_they_are_large(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each compiled shape holds its working memory: the last ``MAX_SHAPES`` stay, fewer when large."""
    from henshin.runtimes import openvino_runtime

    spec = NetworkSpec("tiny", (("x", (3, 16, 16)),), module=_tiny(4), free_size=True)
    runtime = rt.build_runtime(spec, _openvino(tmp_path))
    sizes = [(8 + 4 * i, 8) for i in range(openvino_runtime.MAX_SHAPES + 2)]
    for h, w in sizes:
        runtime(np.zeros((1, 3, h, w), np.float32))
    kept = [key[0][2:] for key in runtime._requests]
    assert kept == sizes[-openvino_runtime.MAX_SHAPES:]  # the oldest went first
    monkeypatch.setattr(openvino_runtime, "MAX_ELEMENTS", 3 * 64 * 64)
    runtime(np.zeros((1, 3, 64, 64), np.float32))  # as large as allowed: the others go
    assert [key[0][2:] for key in runtime._requests] == [(64, 64)]


def test_auto_runs_cpu_networks_on_openvino_where_it_is_installed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Where ONNX Runtime would run a network on its CPU provider, ``auto`` takes OpenVINO's CPU runtime;
    an explicit runtime or provider, fp16/bf16, or no OpenVINO leave it with ONNX Runtime."""
    building = importlib.import_module("henshin.runtimes.build")  # the package re-exports a function of that name

    spec = NetworkSpec("tiny", (("x", (3, 16, 16)),), module=_tiny(3))
    caplog.set_level(logging.INFO, logger="henshin")
    chosen = rt.build_runtime(spec, RuntimeOptions(cache_dir=tmp_path))
    assert isinstance(chosen, rt.OpenVinoRuntime) and chosen.device == "CPU"
    assert "openvino (CPU, fp32" in caplog.text and "ONNX Runtime provider" not in caplog.text
    assert rt.parity(spec, chosen) < 1e-5
    for asked in (
        RuntimeOptions(runtime="onnxruntime", cache_dir=tmp_path),
        RuntimeOptions(provider="cpu", cache_dir=tmp_path),
    ):
        assert isinstance(rt.build_runtime(spec, asked), rt.OnnxRuntime)
    assert not building._openvino_takes_cpu(RuntimeOptions(precision="fp16"))
    assert building._openvino_takes_cpu(RuntimeOptions(precision="int8"))
    building._openvino_cpu.cache_clear()
    monkeypatch.setattr(building, "has_module", lambda name: name != "openvino")
    try:
        assert isinstance(rt.build_runtime(spec, RuntimeOptions(cache_dir=tmp_path)), rt.OnnxRuntime)
    finally:
        building._openvino_cpu.cache_clear()


def test_auto_prefers_openvinos_runtime_to_its_onnx_runtime_plugin_on_the_cpu(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """On an Intel CPU ONNX Runtime's ``auto`` offers the OpenVINO plugin's CPU device ahead of its own CPU
    provider; ``auto`` then runs OpenVINO's own runtime (fixed shapes: faster than both there), while the
    plugin on a GPU, or asked for by name, stays with ONNX Runtime."""
    from henshin.runtimes import providers

    building = importlib.import_module("henshin.runtimes.build")
    intel_cpu = providers.Survey(offers=(providers.Offer("openvino", "CPU", "Intel"), providers.Offer("cpu", "CPU")))
    monkeypatch.setattr(building, "survey", lambda: intel_cpu)
    caplog.set_level(logging.INFO, logger="henshin")
    spec = NetworkSpec("tiny", (("x", (3, 16, 16)),), module=_tiny(3))
    chosen = rt.build_runtime(spec, RuntimeOptions(cache_dir=tmp_path))
    assert isinstance(chosen, rt.OpenVinoRuntime) and chosen.device == "CPU"
    assert "ONNX Runtime provider" not in caplog.text
    assert rt.parity(spec, chosen) < 1e-5
    assert building.runtime_choice(RuntimeOptions(provider="openvino"), True, note=False)[0] == "onnxruntime"
    intel_gpu = providers.Survey(offers=(providers.Offer("openvino", "GPU", "Intel"), providers.Offer("cpu", "CPU")))
    monkeypatch.setattr(building, "survey", lambda: intel_gpu)
    name, offer, _ = building.runtime_choice(RuntimeOptions(), True, note=False)
    assert (name, offer.provider, offer.device) == ("onnxruntime", "openvino", "GPU")


def test_openvino_is_imported_without_its_telemetry() -> None:
    """``import openvino`` sends a usage event to Google Analytics unless told not to: through henshin
    its converter takes its own stub (no sender), in a fresh process that imported nothing before."""
    code = (
        "import sys\n"
        "from henshin.runtimes.openvino_devices import core, version\n"
        "core(); version()\n"
        "from openvino.tools.ovc import telemetry_utils\n"
        "assert sys.modules['openvino_telemetry'] is None, sys.modules['openvino_telemetry']\n"
        "assert telemetry_utils.tm.__name__ == 'openvino.tools.ovc.telemetry_stub', telemetry_utils.tm\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]


# -- options -----------------------------------------------------------------------------------------


def test_openvino_options_are_checked_before_work() -> None:
    from henshin.runtimes.openvino_devices import openvino_device, openvino_devices

    with pytest.raises(OptionError, match="OpenVINO runs on Intel devices"):
        RuntimeOptions(runtime="openvino", device="cuda")
    with pytest.raises(OptionError, match="names an OpenVINO device; add --runtime openvino"):
        RuntimeOptions(runtime="onnxruntime", device="npu")
    with pytest.raises(OptionError, match="--compile applies to the torch runtime"):
        RuntimeOptions(runtime="openvino", compile=True)
    if not any(d.startswith("NPU") for d in openvino_devices()):
        with pytest.raises(
            RuntimeUnavailableError, match="--device npu: OpenVINO sees no such device here"
        ):
            openvino_device("npu", None)
    assert openvino_device("cpu", None) == ("CPU", "fp32")


# -- a conversion end to end --------------------------------------------------------------------------


def test_convert_with_the_default_filter_runs_on_openvino(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A `henshin sample` clip through the default filter: OpenVINO gives ONNX Runtime's picture."""
    monkeypatch.setenv("HENSHIN_HOME", str(tmp_path / "home"))  # its compiled models stay here
    src = tmp_path / "sample.mp4"
    assert (
        main(["-q", "sample", str(src), "--width", "320", "--height", "240", "--frames", "12"]) == 0
    )
    for runtime in ("openvino", "onnxruntime"):
        assert (
            main(
                ["-q", "convert", str(src), str(tmp_path / f"{runtime}.mp4"), "--runtime", runtime]
            )
            == 0
        )
    a, _, _ = decode_video(tmp_path / "openvino.mp4")
    b, _, _ = decode_video(tmp_path / "onnxruntime.mp4")
    original, _, _ = decode_video(src)
    assert len(a) == len(b) == len(original) == 12
    assert np.abs(a[6].astype(int) - b[6]).mean() < 0.5  # the same picture, to H.264's rounding
    assert np.abs(a[6].astype(int) - original[6]).mean() > 2  # and a filtered one
