"""--runtime openvino: every network against eager torch fp32, its compiled-model cache, a conversion end to end."""

from __future__ import annotations

import logging
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
