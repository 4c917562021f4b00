"""``henshin directions fit``: InterFaceGAN's SVM finds a planted direction; folders of faces end to end; errors."""
# ruff: noqa: F811 - the shared fixtures are imported from latent_fixtures and named as arguments

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from latent_fixtures import TINY_DIM, TINY_ROWS, e4e_tiny, face_crop, latent, run  # noqa: F401

from henshin.cli.main import main
from henshin.filters.latent.boundary import fit_boundary, mean_codes
from henshin.samples import portrait


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HENSHIN_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def planted(
    n: int, dim: int, separation: float, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Two unit Gaussians in ``dim`` dimensions whose means lie ``separation`` apart along a random unit direction."""
    rng = np.random.default_rng(seed)
    d = rng.standard_normal(dim)
    d /= np.linalg.norm(d)
    noise = rng.standard_normal((2 * n, dim))
    return noise[:n] + separation / 2 * d, noise[n:] - separation / 2 * d, d


def test_the_svm_normal_recovers_a_planted_direction_and_points_to_the_positives() -> None:
    positive, negative, d = planted(300, 512, 8.0)
    boundary = fit_boundary(positive, negative)
    cosine = float(boundary.normal[0] @ d)
    print(
        f"cosine with the planted direction {cosine:.3f}, cross-validated accuracy {boundary.accuracy:.3f} "
        f"(C={boundary.c:g})"
    )
    assert boundary.normal.shape == (1, 512) and boundary.normal.dtype == np.float32
    assert abs(np.linalg.norm(boundary.normal) - 1) < 1e-5
    assert cosine >= 0.95
    assert 0.95 <= boundary.accuracy <= 1.0
    swapped = fit_boundary(negative, positive)
    assert float(swapped.normal[0] @ d) <= -0.95


def test_the_mean_of_chosen_rows_is_the_code_the_svm_sees() -> None:
    w_plus = np.arange(2 * 4 * 3, dtype=np.float32).reshape(2, 4, 3)
    np.testing.assert_allclose(mean_codes(w_plus, range(1, 3)), w_plus[:, 1:3].mean(1))
    np.testing.assert_allclose(mean_codes(w_plus), w_plus.mean(1))


def _fit_latents(tmp_path: Path, negative: str, *extra: str) -> int:
    """``henshin directions fit my-attr --latents pos.npy NEGATIVE ...`` on the codes saved in tmp_path."""
    return main(
        [
            "directions",
            "fit",
            "my-attr",
            "--latents",
            str(tmp_path / "pos.npy"),
            str(tmp_path / negative),
            *extra,
        ]
    )


def test_fit_from_codes_writes_interfacegan_layout_and_edit_uses_it(
    tmp_path: Path, home: Path, e4e_tiny: Path, face_crop: np.ndarray, capsys
) -> None:
    positive, negative, d = planted(40, TINY_DIM, 6.0, seed=1)
    w_pos = np.repeat(positive[:, None], TINY_ROWS, 1).astype(
        np.float32
    )  # W+ with the code on every row
    np.save(tmp_path / "pos.npy", w_pos)
    torch.save(torch.from_numpy(negative).float(), tmp_path / "neg.pt")  # plain W codes in a .pt
    assert _fit_latents(tmp_path, "neg.pt") == 2
    assert "per face" in capsys.readouterr().err  # W+ against W: one sentence
    np.save(tmp_path / "neg.npy", np.repeat(negative[:, None], TINY_ROWS, 1).astype(np.float32))
    assert _fit_latents(tmp_path, "neg.npy", "--layers", "middle") == 0
    normal = np.load(home / "directions" / "my-attr.npy")
    assert (
        normal.shape == (1, TINY_DIM) and normal.dtype == np.float32 and float(normal[0] @ d) > 0.9
    )
    info = json.loads((home / "directions" / "my-attr.json").read_text())
    assert (info["positive"], info["negative"], info["layers"]) == (40, 40, "middle") and info[
        "cv_accuracy"
    ] > 0.9
    assert _fit_latents(tmp_path, "neg.npy") == 2  # exists: --overwrite needed

    filt = latent(e4e_tiny, edit="my-attr:2", mode="delta")
    run(filt, face_crop)
    move = (filt.last_latents[0] - filt.last_bases[0]).numpy()
    np.testing.assert_allclose(move, 2 * np.repeat(normal, TINY_ROWS, 0), atol=1e-5)
    other = torch.randn(1, TINY_DIM, generator=torch.Generator().manual_seed(3))
    torch.save(other, tmp_path / "other.pt")
    filt = latent(e4e_tiny, edit=f"{tmp_path / 'other.pt'}:1", condition="my-attr", mode="delta")
    run(filt, face_crop)
    move = (filt.last_latents[0] - filt.last_bases[0]).numpy()
    assert abs(float(move[0] @ normal[0])) < 1e-4  # conditioned off the user's direction


def _pictures(folder: Path, count: int, tint: tuple[float, float, float], flip: bool) -> Path:
    """``count`` copies of the sample face, shifted and scaled a little, tinted, optionally mirrored."""
    folder.mkdir()
    face = portrait().astype(np.float32)
    for i in range(count):
        image = np.clip(face * np.array(tint, np.float32), 0, 255).astype(np.uint8)
        image = image[:, ::-1] if flip else image
        m = cv2.getRotationMatrix2D((256, 256), 3.0 * (i % 3 - 1), 0.8 + 0.02 * i)
        m[:, 2] += (4 * (i % 4), 3 * (i % 5))
        image = cv2.warpAffine(
            np.ascontiguousarray(image), m, (512, 512), borderMode=cv2.BORDER_REFLECT
        )
        cv2.imwrite(str(folder / f"{i:02d}.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    return folder


def test_fit_from_two_folders_of_faces_end_to_end(
    tmp_path: Path, home: Path, e4e_tiny: Path, capsys
) -> None:
    warm = _pictures(tmp_path / "warm", 10, (1.15, 0.9, 0.8), flip=False)
    cold = _pictures(tmp_path / "cold", 10, (0.8, 0.95, 1.2), flip=True)
    assert (
        main(
            [
                "directions",
                "fit",
                "warmth",
                "--positive",
                str(warm),
                "--negative",
                str(cold),
                "--weights",
                str(e4e_tiny),
                "--runtime",
                "torch",
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    said = capsys.readouterr().out
    print(said)
    assert "10 positive and 10 negative faces" in said and "cross-validated accuracy" in said
    normal = np.load(home / "directions" / "warmth.npy")
    assert normal.shape == (1, TINY_DIM) and np.isfinite(normal).all()
    info = json.loads((home / "directions" / "warmth.json").read_text())
    assert 0.0 <= info["cv_accuracy"] <= 1.0 and info["weights"] == str(e4e_tiny)


def test_folders_without_enough_faces_are_one_sentence(
    tmp_path: Path, e4e_tiny: Path, capsys
) -> None:
    few = _pictures(tmp_path / "few", 4, (1, 1, 1), flip=False)
    blank = tmp_path / "blank"
    blank.mkdir()
    for i in range(3):
        cv2.imwrite(str(blank / f"{i}.png"), np.full((128, 128, 3), 40 * i, np.uint8))
    cases = [
        (
            ["--positive", str(blank), "--negative", str(few)],
            "no face was found in any of the 3 pictures",
        ),
        (["--positive", str(few), "--negative", str(few)], "needs at least 10 on each side"),
        (["--positive", str(tmp_path / "none"), "--negative", str(few)], "is not a folder"),
        (["--positive", str(few)], "needs --positive DIR and --negative DIR"),
    ]
    for extra, message in cases:
        assert main(["directions", "fit", "x", *extra, "--weights", str(e4e_tiny)]) == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err and err.count("\n") == 1, err
    assert main(["directions", "fit", "smile", "--latents", "a.npy", "b.npy"]) == 2
    assert "released direction" in capsys.readouterr().err
