"""W+ edit maths: direction files, edits, style mixing, InterFaceGAN's conditioning, GANSpace."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from layouts import storages_tagged

from henshin.errors import ModelError
from henshin.filters.latent.maths import (
    apply_edit,
    condition_direction,
    ganspace_edit,
    layer_groups,
    load_direction,
    mix_styles,
)


def _unit(*shape: int, seed: int) -> torch.Tensor:
    v = torch.randn(*shape, generator=torch.Generator().manual_seed(seed))
    return v / v.norm()


@pytest.fixture
def w_plus() -> torch.Tensor:
    return torch.randn(3, 18, 512, generator=torch.Generator().manual_seed(0))


# -- direction files -----------------------------------------------------------------------------------


def test_e4e_direction_files_load_as_stored(tmp_path: Path) -> None:
    age, pose = torch.randn(1, 512), torch.randn(1, 18, 512)
    torch.save(age, tmp_path / "age.pt")
    with storages_tagged("cuda:0"):  # e4e's pose.pt was saved from the GPU
        torch.save(pose, tmp_path / "pose.pt")
    got_age, got_pose = load_direction(tmp_path / "age.pt"), load_direction(tmp_path / "pose.pt")
    assert torch.equal(got_age, age) and torch.equal(got_pose, pose)
    assert got_pose.device.type == "cpu" and got_pose.dtype == torch.float32


def test_interfacegan_boundaries_become_float32(tmp_path: Path) -> None:
    boundary = np.random.default_rng(0).standard_normal((1, 512))
    boundary /= np.linalg.norm(boundary)
    np.save(tmp_path / "stylegan_ffhq_smile_w_boundary.npy", boundary)
    got = load_direction(tmp_path / "stylegan_ffhq_smile_w_boundary.npy")
    assert got.dtype == torch.float32 and got.shape == (1, 512)
    np.testing.assert_allclose(got.numpy(), boundary, rtol=1e-6)


def test_a_ganspace_file_is_its_three_tensors(tmp_path: Path) -> None:
    pca = {"mean": torch.randn(1, 512), "comp": torch.randn(80, 1, 512), "std": torch.rand(80).double()}
    torch.save(pca, tmp_path / "ffhq_pca.pt")
    got = load_direction(tmp_path / "ffhq_pca.pt")
    assert set(got) == {"mean", "comp", "std"} and all(v.dtype == torch.float32 for v in got.values())
    assert torch.equal(got["comp"], pca["comp"])


def test_other_files_are_refused(tmp_path: Path) -> None:
    torch.save({"weights": torch.zeros(3)}, tmp_path / "x.pt")
    with pytest.raises(ModelError, match=r"x\.pt is not a latent direction"):
        load_direction(tmp_path / "x.pt")


# -- edits -------------------------------------------------------------------------------------------------


def test_strength_zero_returns_w_plus_exactly(w_plus: torch.Tensor) -> None:
    before = w_plus.clone()
    out = apply_edit(w_plus, _unit(1, 512, seed=1), 0.0)
    assert torch.equal(out, w_plus) and out is not w_plus
    assert torch.equal(w_plus, before)


@pytest.mark.parametrize("shape", [(512,), (1, 512), (18, 512), (1, 18, 512)])
def test_an_edit_moves_only_the_chosen_rows(w_plus: torch.Tensor, shape: tuple[int, ...]) -> None:
    direction = torch.randn(*shape)
    before = w_plus.clone()
    out = apply_edit(w_plus, direction, 2.5, layers=range(4, 8))
    per_row = direction.reshape(-1, 512).expand(18, 512)
    torch.testing.assert_close(out[:, 4:8], w_plus[:, 4:8] + 2.5 * per_row[4:8])
    assert torch.equal(out[:, :4], w_plus[:, :4]) and torch.equal(out[:, 8:], w_plus[:, 8:])
    assert torch.equal(w_plus, before)
    torch.testing.assert_close(apply_edit(w_plus, direction, -1.0), w_plus - per_row)


def test_a_direction_of_the_wrong_size_is_refused(w_plus: torch.Tensor) -> None:
    with pytest.raises(ValueError, match=r"got \(14, 512\)"):
        apply_edit(w_plus, torch.zeros(14, 512), 1.0)


def test_mixing_copies_exactly_the_chosen_rows(w_plus: torch.Tensor) -> None:
    ref = torch.randn(1, 18, 512)
    before = w_plus.clone()
    out = mix_styles(w_plus, ref, [8, 9, 17])
    rows = torch.zeros(18, dtype=torch.bool)
    rows[[8, 9, 17]] = True
    assert torch.equal(out[:, rows], ref[:, rows].expand(3, -1, -1))
    assert torch.equal(out[:, ~rows], w_plus[:, ~rows])
    assert torch.equal(w_plus, before)
    per_face = torch.randn(3, 18, 512)
    assert torch.equal(mix_styles(w_plus, per_face, range(18)), per_face)


# -- InterFaceGAN's conditional manipulation -----------------------------------------------------------------


@pytest.mark.parametrize("n_conditions", [1, 2, 3, 5])
def test_a_conditioned_direction_is_unit_and_orthogonal_to_the_conditions(n_conditions: int) -> None:
    primal = _unit(1, 512, seed=10)
    conditions = [_unit(1, 512, seed=20 + i) for i in range(n_conditions)]
    before = primal.clone()
    out = condition_direction(primal, conditions)
    assert out.shape == (1, 512) and out.dtype == torch.float32
    assert abs(out.norm().item() - 1) < 1e-6
    for c in conditions:
        assert abs((out * c).sum().item()) < 1e-6
    assert torch.equal(primal, before)


def test_one_and_two_conditions_match_interfacegan_s_closed_forms() -> None:
    p, c1, c2 = (_unit(1, 512, seed=s).double() for s in (1, 2, 3))
    one = p - (p @ c1.T) * c1  # project_boundary with one condition
    torch.testing.assert_close(condition_direction(p, [c1]).double(), one / one.norm(), atol=1e-6, rtol=0)
    p1, p2, c12 = p @ c1.T, p @ c2.T, c1 @ c2.T
    alpha = (p1 - p2 * c12) / (1 - c12 ** 2 + 1e-8)
    beta = (p2 - p1 * c12) / (1 - c12 ** 2 + 1e-8)
    two = p - alpha * c1 - beta * c2
    torch.testing.assert_close(condition_direction(p, [c1, c2]).double(), two / two.norm(), atol=1e-6, rtol=0)


def test_no_condition_leaves_the_primal_unchanged() -> None:
    primal = torch.randn(1, 512)
    assert torch.equal(condition_direction(primal, []), primal)


# -- GANSpace ------------------------------------------------------------------------------------------------


def test_ganspace_sets_the_component_coordinate_on_the_chosen_rows(w_plus: torch.Tensor) -> None:
    comp = torch.linalg.qr(torch.randn(512, 80))[0].T.reshape(80, 1, 512)  # orthonormal components
    pca = {"mean": torch.randn(1, 512), "comp": comp, "std": torch.rand(80) + 0.5}
    before = w_plus.clone()
    out = ganspace_edit(w_plus, pca, component=7, start=0, end=5, strength=-3.0)
    coord = ((out[:, 0] - pca["mean"]) @ comp[7, 0]) / pca["std"][7]
    torch.testing.assert_close(coord, torch.full((3,), -3.0), atol=1e-4, rtol=0)
    delta = out[:, :5] - w_plus[:, :5]
    torch.testing.assert_close(delta, delta[:, :1].expand(-1, 5, -1))  # the same move on every chosen row
    assert torch.equal(out[:, 5:], w_plus[:, 5:]) and torch.equal(w_plus, before)


def test_layer_groups_split_coarse_middle_fine() -> None:
    assert layer_groups(18) == {"coarse": range(0, 4), "middle": range(4, 8), "fine": range(8, 18)}
    assert list(layer_groups(14)["fine"]) == list(range(8, 14))
