"""GANs N' Roses: the official checkpoint layout loads strictly, runs, exports to ONNX with parity."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import NARROW_GNR
from layouts import gnr_generator_state
from references import reference_gnr, reference_gnr_style

from henshin import runtimes as rt
from henshin.errors import ModelError
from henshin.models import store as models
from henshin.models.checkpoints import load_checkpoint
from henshin.nets.gnr import GNRGenerator, load_gnr, style_from_seed
from henshin.runtimes import NetworkSpec, RuntimeOptions

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.fixture(scope="module")
def model(gnr_training_file: Path) -> torch.nn.Module:
    return load_gnr(gnr_training_file)


@pytest.fixture(scope="module")
def faces() -> torch.Tensor:
    return torch.rand(2, 3, 256, 256, generator=torch.Generator().manual_seed(0)) * 2 - 1


def _resave(src: Path, dest: Path, change) -> Path:
    ckpt = load_checkpoint(src)
    change(ckpt)
    torch.save(ckpt, dest)
    return dest


def test_the_training_checkpoint_loads_strictly_and_runs(gnr_training_file: Path, model: torch.nn.Module,
                                                         faces: torch.Tensor) -> None:
    ckpt = load_checkpoint(gnr_training_file)
    state = model.generator.state_dict()
    assert set(state) == set(ckpt["G_A2B_ema"])
    assert all(torch.equal(state[k], v) for k, v in ckpt["G_A2B_ema"].items())
    assert not model.training and next(model.parameters()).dtype == torch.float32
    styles = style_from_seed(1, 2)
    with torch.no_grad():
        out = model(faces, styles)
    assert out.shape == (2, 3, 256, 256) and out.dtype == torch.float32
    # GANsNRoses' Generator written from the state dict in functional ops (tests/references.py);
    # outputs span about ±5 here, measured max difference 3e-6
    torch.testing.assert_close(out, reference_gnr(ckpt["G_A2B_ema"], faces, styles), atol=1e-4, rtol=1e-5)


def test_the_parts_compose_to_the_whole(model: torch.nn.Module, faces: torch.Tensor) -> None:
    styles = style_from_seed(2, 2)
    with torch.no_grad():
        content, w = model.content_of(faces), model.map_style(styles)
        assert content.shape == (2, NARROW_GNR[16], 16, 16) and w.shape == (2, 32)
        whole = model(faces, styles)
        assert torch.equal(model.decode(content, styles), whole)
        assert torch.equal(model.decode_w(content, w), whole)


def test_style_of_reads_anime_pictures_through_g_b2a_ema(gnr_training_file: Path, model: torch.nn.Module,
                                                          faces: torch.Tensor) -> None:
    b2a = load_checkpoint(gnr_training_file)["G_B2A_ema"]
    with torch.no_grad():
        got = model.style_of(faces)
    assert got.shape == (2, 8)
    torch.testing.assert_close(got, reference_gnr_style(b2a, faces), atol=1e-5, rtol=1e-5)
    assert not torch.allclose(got, reference_gnr_style(load_checkpoint(gnr_training_file)["G_A2B_ema"], faces))


def test_a_file_with_only_g_a2b_ema_loads_and_style_of_says_why_not(gnr_training_file: Path, tmp_path: Path,
                                                                    faces: torch.Tensor) -> None:
    path = _resave(gnr_training_file, tmp_path / "a2b.pt",
                   lambda c: [c.pop(k) for k in list(c) if k != "G_A2B_ema"])
    model = load_gnr(path)
    assert model.anime_style is None
    with pytest.raises(ModelError) as info:
        model.style_of(faces)
    message = str(info.value)
    assert "G_B2A_ema" in message and "\n" not in message and message.endswith(".") and message.count(". ") == 0


@pytest.mark.parametrize(("entry", "damage", "match"), [
    ("G_A2B_ema", "rename", r"not a GANs N' Roses G_A2B_ema checkpoint: missing convs\.5\.conv\.weight; "
                            r"unexpected convs\.5\.conv\.weights"),
    ("G_B2A_ema", "reshape", r"not a GANs N' Roses G_B2A_ema checkpoint: wrong shape encoder\.content\.1\.0\.weight"),
    ("G_A2B_ema", "drop", r"not a GANs N' Roses G_A2B_ema checkpoint: missing mapping\.4\.weight"),
])
def test_a_key_that_does_not_fit_is_refused_naming_entry_and_key(gnr_training_file: Path, tmp_path: Path,
                                                                  entry: str, damage: str, match: str) -> None:
    def change(ckpt: dict) -> None:
        state = ckpt[entry] = dict(ckpt[entry])
        if damage == "rename":
            state["convs.5.conv.weights"] = state.pop("convs.5.conv.weight")
        elif damage == "reshape":
            state["encoder.content.1.0.weight"] = torch.zeros(32, 32, 3, 3)
        else:
            del state["mapping.4.weight"]

    with pytest.raises(ModelError, match=match):
        load_gnr(_resave(gnr_training_file, tmp_path / "bad.pt", change))


def test_a_file_without_g_a2b_ema_is_refused(gnr_training_file: Path, tmp_path: Path) -> None:
    path = _resave(gnr_training_file, tmp_path / "b2a.pt", lambda c: c.pop("G_A2B_ema"))
    with pytest.raises(ModelError, match=r"b2a\.pt has no G_A2B_ema; expected GANsNRoses' GNR_checkpoint\.pt"):
        load_gnr(path)


def test_style_from_seed_is_manual_seed_then_randn_without_touching_the_global_state() -> None:
    state = torch.get_rng_state()
    got = style_from_seed(84986, 3)
    assert torch.equal(torch.get_rng_state(), state)
    torch.manual_seed(84986)
    assert got.dtype == torch.float32 and torch.equal(got, torch.randn(3, 8))
    torch.set_rng_state(state)


def test_the_released_configuration_has_the_official_keys_and_shapes() -> None:
    """Generator(256, num_down=4, latent_dim=8, n_mlp=5, n_res=1), compared key by key (not run)."""
    official = gnr_generator_state()
    mine = GNRGenerator().state_dict()
    assert {k: tuple(v.shape) for k, v in mine.items()} == {k: tuple(v.shape) for k, v in official.items()}
    assert mine["mapping.0.weight"].shape == (512, 8) and mine["encoder.style.4.weight"].shape == (8, 512)


def test_the_onnx_export_matches_the_reference_forward(gnr_training_file: Path, model: torch.nn.Module,
                                                       faces: torch.Tensor, tmp_path: Path) -> None:
    spec = NetworkSpec("gnr-test", (("image", (3, 256, 256)), ("style", (8,))), module=model)
    runtime = rt.build_runtime(spec, RuntimeOptions(runtime="onnxruntime", cache_dir=tmp_path))
    assert isinstance(runtime, rt.OnnxRuntime)
    styles = style_from_seed(4, 2)
    want = reference_gnr(load_checkpoint(gnr_training_file)["G_A2B_ema"], faces, styles)
    got = torch.from_numpy(runtime(faces.numpy(), styles.numpy()))
    torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-5)  # measured max difference 4e-6


def test_import_keeps_both_generators_also_as_safetensors(gnr_training_file: Path, model: torch.nn.Module,
                                                          tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                          faces: torch.Tensor) -> None:
    monkeypatch.setenv("HENSHIN_HOME", str(tmp_path / "home"))
    (path,) = models.import_model("gnr", gnr_training_file, safetensors=True, say=lambda line: None)
    assert path.suffix == ".safetensors" and set(load_checkpoint(path)) == {"G_A2B_ema", "G_B2A_ema"}
    stored = load_gnr(path)
    with torch.no_grad():
        assert torch.equal(stored.style_of(faces), model.style_of(faces))
    (verdict,) = models.verify("gnr")
    assert verdict.state == "ok" and "loads into its network strictly" in verdict.lines[0]


# -- GPU (skipped without CUDA) ---------------------------------------------------------------------


@cuda
@pytest.mark.gpu
@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_half_precision_is_close_to_fp32(precision: str) -> None:
    torch.manual_seed(0)
    from henshin.nets.gnr import GNR

    module = GNR().eval()  # the released configuration, seeded weights
    spec = NetworkSpec("gnr-test", (("image", (3, 256, 256)), ("style", (8,))), module=module)
    runtime = rt.TorchRuntime(spec, RuntimeOptions(runtime="torch", device="cuda", precision=precision))
    faces = torch.rand(4, 3, 256, 256, device="cuda") * 2 - 1
    styles = style_from_seed(3, 4).cuda()
    want = module.cuda()(faces, styles)
    got = runtime(faces, styles)
    assert torch.isfinite(got).all()
    assert (got - want).abs().mean() < 0.02 * want.abs().mean() + 1e-3
