"""e4e encoder: the released layout (saved from cuda:0, options as a dict or a Namespace) loads strictly."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from references import reference_e4e

from henshin import runtimes as rt
from henshin.errors import ModelError
from henshin.models import store as models
from henshin.models.checkpoints import load_checkpoint
from henshin.nets.e4e import load_e4e, load_encoder
from henshin.nets.stylegan2 import load_generator
from henshin.runtimes import NetworkSpec, RuntimeOptions

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.fixture(scope="module")
def encoder(e4e_official: Path) -> torch.nn.Module:
    return load_encoder(e4e_official)


@pytest.fixture(scope="module")
def narrow(e4e_narrow: Path) -> torch.nn.Module:
    return load_encoder(e4e_narrow)


def _resave(src: Path, dest: Path, change) -> Path:
    ckpt = load_checkpoint(src)
    change(ckpt)
    torch.save(ckpt, dest)
    return dest


def test_released_layout_loads_strictly_and_encodes_a_face(e4e_official: Path, encoder: torch.nn.Module) -> None:
    ckpt = load_checkpoint(e4e_official)
    state = encoder.state_dict()
    want = {k.removeprefix("encoder."): v for k, v in ckpt["state_dict"].items() if k.startswith("encoder.")}
    assert set(state) == set(want) | {"latent_avg"}
    assert all(torch.equal(state[k], v) for k, v in want.items())
    assert encoder.n_latent == 14 and torch.equal(encoder.latent_avg, ckpt["latent_avg"])
    assert not encoder.training
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(1)) * 2 - 1  # small: full widths are slow
    with torch.no_grad():
        w_plus = encoder(x)
    assert w_plus.shape == (1, 14, 512) and w_plus.dtype == torch.float32
    # Encoder4Editing + pSp's latent_avg, written from the state dict in functional ops (tests/references.py)
    # W+ values reach about 200 with these weights; measured max difference 3e-4 at 256 px
    torch.testing.assert_close(w_plus, reference_e4e(want, x, ckpt["latent_avg"]), atol=1e-3, rtol=1e-4)
    assert (w_plus - ckpt["latent_avg"]).abs().mean() > 0.1  # the encoder's own part is not negligible


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA machine loads cuda:0 storages as they are")
def test_storages_saved_from_cuda_are_mapped_to_the_cpu(e4e_official: Path) -> None:
    with pytest.raises(RuntimeError, match="CUDA"):  # the file really names cuda:0
        torch.load(e4e_official, weights_only=True)
    ckpt = load_checkpoint(e4e_official)
    assert {v.device.type for v in ckpt["state_dict"].values()} == {"cpu"}


def test_latent_avg_is_added_where_the_options_say_so(e4e_narrow: Path, narrow: torch.nn.Module,
                                                       tmp_path: Path) -> None:
    plain = load_encoder(_resave(e4e_narrow, tmp_path / "plain.pt",
                                 lambda c: setattr(c["opts"], "start_from_latent_avg", False)))
    assert plain.latent_avg is None and narrow.latent_avg.shape == (10, 32)
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(narrow(x) - plain(x), narrow.latent_avg.expand(2, -1, -1))


def test_a_missing_latent_avg_is_the_decoder_s_mean_as_in_psp(e4e_narrow: Path, tmp_path: Path) -> None:
    path = _resave(e4e_narrow, tmp_path / "no-avg.pt", lambda c: c.pop("latent_avg"))
    mean = load_generator(path).mean_latent(10_000)
    torch.testing.assert_close(load_encoder(path).latent_avg, mean.expand(10, -1))


def test_the_generator_of_an_e4e_file_is_the_rosinality_one_it_contains(e4e_official: Path,
                                                                        rosinality_256: Path) -> None:
    from_e4e = load_generator(e4e_official)
    mine, theirs = from_e4e.state_dict(), torch.load(rosinality_256, weights_only=True)["g_ema"]
    assert set(mine) == set(theirs) and all(torch.equal(mine[k], theirs[k]) for k in mine)
    assert (from_e4e.size, from_e4e.n_latent) == (256, 14)
    assert torch.equal(from_e4e.latent_avg, load_checkpoint(e4e_official)["latent_avg"][0])


def test_style_blocks_must_agree_with_stylegan_size(e4e_narrow: Path, tmp_path: Path) -> None:
    path = _resave(e4e_narrow, tmp_path / "size.pt", lambda c: setattr(c["opts"], "stylegan_size", 128))
    with pytest.raises(ModelError, match=r"10 style blocks \(encoder.styles.N\) but opts stylegan_size 128 needs 12"):
        load_encoder(path)


def test_a_renamed_encoder_key_is_refused_by_name(e4e_narrow: Path, tmp_path: Path) -> None:
    def rename(ckpt: dict) -> None:
        sd = ckpt["state_dict"]
        sd["encoder.body.5.res_layer.5.fc_1.weight"] = sd.pop("encoder.body.5.res_layer.5.fc1.weight")

    path = _resave(e4e_narrow, tmp_path / "renamed.pt", rename)
    with pytest.raises(ModelError, match=r"renamed\.pt is not a pSp/e4e encoder checkpoint: missing "
                                         r"body\.5\.res_layer\.5\.fc1\.weight; unexpected body\.5\.res_layer\.5\.fc_1\.weight"):
        load_encoder(path)


def test_other_encoders_and_files_are_refused(e4e_narrow: Path, rosinality_256: Path, tmp_path: Path) -> None:
    path = _resave(e4e_narrow, tmp_path / "psp.pt", lambda c: setattr(c["opts"], "encoder_type", "GradualStyleEncoder"))
    with pytest.raises(ModelError, match="holds a GradualStyleEncoder encoder; henshin reads e4e"):
        load_encoder(path)
    with pytest.raises(ModelError, match=r"is not an e4e checkpoint: expected \{\"state_dict\", \"opts\""):
        load_encoder(rosinality_256)


def test_the_onnx_export_matches_the_reference_forward(e4e_narrow: Path, narrow: torch.nn.Module,
                                                       tmp_path: Path) -> None:
    spec = NetworkSpec("e4e-test", (("image", (3, 256, 256)),), module=narrow)
    runtime = rt.build_runtime(spec, RuntimeOptions(runtime="onnxruntime", cache_dir=tmp_path))
    assert isinstance(runtime, rt.OnnxRuntime)
    ckpt = load_checkpoint(e4e_narrow)
    state = {k.removeprefix("encoder."): v for k, v in ckpt["state_dict"].items() if k.startswith("encoder.")}
    x = torch.rand(2, 3, 256, 256, generator=torch.Generator().manual_seed(2)) * 2 - 1
    want = reference_e4e(state, x, ckpt["latent_avg"])  # values up to about 6; measured differences under 1e-5
    torch.testing.assert_close(torch.from_numpy(runtime(x.numpy())), want, atol=1e-4, rtol=1e-5)
    with torch.no_grad():
        torch.testing.assert_close(narrow(x), want, atol=1e-4, rtol=1e-5)


# -- the registry ------------------------------------------------------------------------------------


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HENSHIN_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def test_e4e_import_takes_any_stylegan_size_and_verifies_strictly(e4e_narrow: Path, home: Path) -> None:
    (path,) = models.import_model("e4e-ffhq", e4e_narrow, say=lambda line: None)
    (verdict,) = models.verify("e4e-ffhq")
    assert verdict.state == "ok" and "loads into its network strictly" in verdict.lines[0]
    encoder, generator = load_e4e(path)
    assert (encoder.n_latent, generator.size) == (10, 64)


def test_e4e_import_as_safetensors_keeps_options_and_mean_latent(e4e_narrow: Path, narrow: torch.nn.Module,
                                                                 home: Path) -> None:
    (path,) = models.import_model("e4e-ffhq", e4e_narrow, safetensors=True, say=lambda line: None)
    assert path.suffix == ".safetensors"
    stored = load_encoder(path)
    assert torch.equal(stored.latent_avg, narrow.latent_avg)
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(stored(x), narrow(x))


def test_a_256_px_generator_is_refused_as_stylegan2_ffhq_1024(rosinality_256: Path, home: Path) -> None:
    with pytest.raises(ModelError, match="not a StyleGAN2 config-f FFHQ 1024 generator, rosinality format checkpoint"
                                         ".*lacks g_ema/to_rgbs.7.conv.weight"):
        models.import_model("stylegan2-ffhq-1024", rosinality_256, say=lambda line: None)
    assert models.default_registry().get("stylegan2-ffhq-1024").loader == "henshin.nets.stylegan2:load_ffhq_1024"


# -- GPU (skipped without CUDA) ---------------------------------------------------------------------


@cuda
@pytest.mark.gpu
@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_half_precision_encoding_is_close_to_fp32(encoder: torch.nn.Module, precision: str) -> None:
    spec = NetworkSpec("e4e-test", (("image", (3, 256, 256)),), module=encoder)
    runtime = rt.TorchRuntime(spec, RuntimeOptions(runtime="torch", device="cuda", precision=precision))
    x = torch.rand(4, 3, 256, 256, device="cuda") * 2 - 1
    want = spec.module.cuda()(x)
    got = runtime(x)
    spec.module.cpu()
    assert torch.isfinite(got).all()
    deltas = want - encoder.latent_avg.cuda()  # the network's own output, without the added mean
    assert (got - want).abs().mean() < 0.02 * deltas.abs().mean() + 1e-3
