"""StyleGAN2 generator: official checkpoints load strictly, synthesis follows rosinality, ONNX parity."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from layouts import reference_mapping, reference_synthesis, rosinality_channels, stylegan2_state

from henshin import runtimes as rt
from henshin.errors import ModelError
from henshin.nets.layers import set_grouped
from henshin.nets.stylegan2 import load_ffhq_1024, load_generator
from henshin.runtimes import NetworkSpec, RuntimeOptions

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.fixture(scope="module")
def g256(rosinality_256: Path) -> torch.nn.Module:
    return load_generator(rosinality_256)


@pytest.fixture(scope="module")
def narrow(narrow_generator: Path) -> torch.nn.Module:
    return load_generator(narrow_generator)


def test_rosinality_checkpoint_loads_strictly_and_runs(rosinality_256: Path, g256: torch.nn.Module) -> None:
    ckpt = torch.load(rosinality_256, weights_only=True)
    assert (g256.size, g256.n_latent, g256.style_dim, g256.n_mlp) == (256, 14, 512, 8)
    assert not g256.training and next(g256.parameters()).device.type == "cpu"
    state = g256.state_dict()
    assert set(state) == set(ckpt["g_ema"])
    assert all(torch.equal(state[k], v) for k, v in ckpt["g_ema"].items())
    assert torch.equal(g256.latent_avg, ckpt["latent_avg"])
    with torch.no_grad():
        image = g256.synthesize(g256.mean_latent(64)[:, None].repeat(1, 14, 1))
    assert image.shape == (1, 3, 256, 256) and image.dtype == torch.float32 and torch.isfinite(image).all()


def test_size_mapping_depth_and_channels_come_from_the_keys(narrow: torch.nn.Module) -> None:
    """A training file (g, d, optimizers beside g_ema) of a 64-px, 3-layer-mapping, narrow generator."""
    assert (narrow.size, narrow.n_latent, narrow.style_dim, narrow.n_mlp) == (64, 10, 32, 3)
    assert torch.equal(narrow.latent_avg, torch.ones(32))
    assert narrow.convs[-1].conv.weight.shape == (1, 8, 8, 3, 3)
    assert narrow.synthesize(torch.randn(2, 10, 32)).shape == (2, 3, 64, 64)


def test_synthesis_follows_rosinality_row_by_row(narrow_generator: Path, narrow: torch.nn.Module) -> None:
    state = torch.load(narrow_generator, weights_only=True)["g_ema"]
    w_plus = torch.randn(2, 10, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(narrow.synthesize(w_plus), reference_synthesis(state, w_plus), atol=1e-4, rtol=1e-4)


def test_synthesizing_the_mapped_z_on_every_row_decodes_z(narrow_generator: Path, narrow: torch.nn.Module) -> None:
    state = torch.load(narrow_generator, weights_only=True)["g_ema"]
    z = torch.randn(3, 32, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        w = narrow.mapping(z)
        torch.testing.assert_close(w, reference_mapping(state, z), atol=1e-5, rtol=1e-5)
        got = narrow.synthesize(w[:, None].repeat(1, narrow.n_latent, 1))
        want = reference_synthesis(state, reference_mapping(state, z)[:, None].repeat(1, 10, 1))
    torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)


def test_grouped_and_batched_modulated_convs_agree(narrow: torch.nn.Module) -> None:
    w_plus = torch.randn(3, 10, 32)
    with torch.no_grad():
        batched = narrow(w_plus)
        grouped = set_grouped(narrow, True)(w_plus)
        set_grouped(narrow, False)
    torch.testing.assert_close(batched, grouped, atol=1e-4, rtol=1e-4)


def test_mean_latent_is_the_mean_of_seeded_mapped_normals(narrow: torch.nn.Module) -> None:
    z = torch.randn(256, 32, generator=torch.Generator().manual_seed(9))
    with torch.no_grad():
        torch.testing.assert_close(narrow.mean_latent(256, seed=9), narrow.mapping(z).mean(0, keepdim=True))
    assert narrow.mean_latent(256, seed=9).shape == (1, 32)


@pytest.mark.parametrize("damage", ["rename", "reshape", "drop-block"])
def test_a_key_that_does_not_fit_is_refused_by_name(tmp_path: Path, damage: str) -> None:
    state = stylegan2_state(32, {4: 8, 8: 8, 16: 8, 32: 8}, n_mlp=2, style_dim=16)
    if damage == "rename":
        state["convs.3.conv.modulations.weight"] = state.pop("convs.3.conv.modulation.weight")
        match = r"missing convs\.3\.conv\.modulation\.weight; unexpected convs\.3\.conv\.modulations\.weight"
    elif damage == "reshape":
        state["to_rgbs.1.bias"] = torch.zeros(1, 3, 1, 2)
        match = r"wrong shape to_rgbs\.1\.bias \(1, 3, 1, 2\) \(expected \(1, 3, 1, 1\)\)"
    else:
        for key in [k for k in state if k.startswith("to_rgbs.1.")]:
            state.pop(key)
        match = r"missing to_rgbs\.1\.conv\.weight"
    torch.save({"g_ema": state, "latent_avg": torch.zeros(16)}, tmp_path / "g.pt")
    with pytest.raises(ModelError, match=rf"g\.pt is not a StyleGAN2 generator checkpoint: .*{match}"):
        load_generator(tmp_path / "g.pt")


def test_other_files_are_refused_in_one_sentence(tmp_path: Path) -> None:
    torch.save({"generator": {"w": torch.zeros(1)}}, tmp_path / "other.pt")
    with pytest.raises(ModelError, match=r"expected rosinality's \{\"g_ema\", \"latent_avg\"\}"):
        load_generator(tmp_path / "other.pt")
    torch.save({"g_ema": {"style.1.weight": torch.zeros(4, 4)}}, tmp_path / "headless.pt")
    with pytest.raises(ModelError, match="missing to_rgbs.0.conv.weight"):
        load_generator(tmp_path / "headless.pt")


def test_the_ffhq_1024_check_refuses_a_256_px_generator(rosinality_256: Path) -> None:
    with pytest.raises(ModelError, match="holds a 256-px StyleGAN2 generator.*1024-px FFHQ config-f"):
        load_ffhq_1024(rosinality_256)


def test_config_f_at_1024_has_rosinality_s_shapes() -> None:
    """FFHQ config-f (1024 px, multiplier 2): every key and shape of the layout."""
    from henshin.nets.stylegan2 import StyleGAN2Generator

    net = StyleGAN2Generator(1024, 512, 8)
    official = stylegan2_state(1024, rosinality_channels(2))
    assert net.n_latent == 18
    assert {k: tuple(v.shape) for k, v in net.state_dict().items()} == {k: tuple(v.shape) for k, v in official.items()}


def test_onnx_export_matches_eager_torch(narrow: torch.nn.Module, tmp_path: Path) -> None:
    """Fixed noise travels as graph constants; the batched modulated conv keeps the batch axis free."""
    spec = NetworkSpec("stylegan2-test", (("w_plus", (10, 32)),), module=narrow)
    runtime = rt.build_runtime(spec, RuntimeOptions(runtime="onnxruntime", cache_dir=tmp_path))
    assert rt.parity(spec, runtime, batch=2) < 1e-3
    assert runtime(torch.rand(3, 10, 32)).shape == (3, 3, 64, 64)


# -- GPU (skipped without CUDA) ---------------------------------------------------------------------


@cuda
@pytest.mark.gpu
@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_half_precision_synthesis_is_close_to_fp32(g256: torch.nn.Module, precision: str) -> None:
    spec = NetworkSpec("stylegan2-test", (("w_plus", (14, 512)),), module=g256)
    runtime = rt.TorchRuntime(spec, RuntimeOptions(runtime="torch", device="cuda", precision=precision))
    w_plus = g256.mean_latent(512).cuda()[:, None].repeat(4, 14, 1) + 0.5 * torch.randn(4, 14, 512, device="cuda")
    want = spec.module.cuda()(w_plus)
    got = runtime(w_plus)
    spec.module.cpu()
    assert torch.isfinite(got).all()
    assert (got - want).abs().mean() < 0.02 * want.abs().mean() + 1e-3
