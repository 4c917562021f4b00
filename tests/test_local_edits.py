"""Channel-local edits (ATMGAN): a planted channel is found; the edit stays in its region; strength 0 is the identity."""
# ruff: noqa: F811 - the shared fixtures are imported from latent_fixtures and named as arguments

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from latent_fixtures import e4e_tiny, face_crop, latent, run  # noqa: F401

from henshin.cli.main import main
from henshin.filters.latent.local import LocalEdit, measure, sample_channels
from henshin.filters.reference import face_landmarks
from henshin.nets.stylegan2 import StyleGAN2Generator
from henshin.samples import portrait

PLANTED, LAYER = 5, 16
CHANNELS = {4: 16, 8: 16, 16: 16, 32: 16, 64: 8}


class PlantedGenerator(StyleGAN2Generator):
    """A 64-px generator whose channel 5 at 16 px opens the mouth: the channel is raised inside the
    mouth's region by a known amount per sample, and that amount is written into pixel (0, 0),
    from which the stand-in face finder opens the lips of a template face."""

    region = torch.zeros(LAYER, LAYER)

    def synthesize(self, w_plus, size=None, offsets=None, record=None):
        amount = torch.tanh(w_plus[:, 0, 0] * 3)
        planted = torch.zeros(len(w_plus), CHANNELS[LAYER], LAYER, LAYER)
        planted[:, PLANTED] = amount[:, None, None] * self.region * 4
        out = super().synthesize(w_plus, size, {LAYER: planted}, record)
        out[:, :, 0, 0] = amount[:, None]
        return out


@pytest.fixture(scope="module")
def template() -> np.ndarray:
    """The sample face's landmarks scaled onto a 64-px picture."""
    return face_landmarks(portrait()) * np.float32(64 / 512)


def test_the_planted_channel_is_found_with_its_sign(template: np.ndarray) -> None:
    from henshin.filters.latent.local import attribute_mask

    torch.manual_seed(0)
    generator = PlantedGenerator(64, 16, 2, CHANNELS).eval()
    PlantedGenerator.region = torch.from_numpy(attribute_mask(template, "mouth_open", 64, LAYER))

    def landmarks_of(image: np.ndarray) -> np.ndarray:
        amount = image[0, 0, 0] / 127.5 - 1  # what the planted generator wrote
        points = template.copy()
        points[14, 1] += 2.0 + 2.0 * amount  # the lower lip moves down as the channel rises
        return points

    edit = sample_channels(generator, "mouth_open", LAYER, 40, 3, landmarks_of)
    print(f"channels {edit.channels}, scores {edit.scores}")
    assert edit.channels[0] == PLANTED and edit.signs[0] == 1.0 and edit.scores[0] > 0.95
    assert max(abs(s) for s in edit.scores[1:]) < edit.scores[0]
    assert edit.faces == 40 and np.asarray(edit.mask).shape == (LAYER, LAYER)
    opened = template.copy()
    opened[14, 1] += 5.0
    assert measure(opened, "mouth_open") > measure(template, "mouth_open")


def _local_file(path: Path, channel: int, strength_layer: int = 16) -> Path:
    mask = np.zeros((strength_layer, strength_layer))
    mask[9:13, 5:11] = 1.0  # the lower middle of the face: where a mouth is
    edit = LocalEdit(
        "mouth_open",
        strength_layer,
        (channel,),
        (1.0,),
        (1.0,),
        (0.9,),
        tuple(map(tuple, mask.tolist())),
        10,
        10,
    )
    path.write_text(edit.to_json())
    return path


def test_a_local_edit_changes_its_region_far_more_than_the_rest_and_zero_is_the_identity(
    e4e_tiny: Path, face_crop: np.ndarray, tmp_path: Path
) -> None:
    local = _local_file(tmp_path / "mouth.local.json", 3)
    plain = run(latent(e4e_tiny, mode="replace"), face_crop)
    assert np.array_equal(
        run(latent(e4e_tiny, mode="replace", local=f"{local}:0"), face_crop), plain
    )
    filt = latent(e4e_tiny, mode="delta", local=f"{local}:0")
    assert np.array_equal(
        run(filt, face_crop), face_crop
    )  # delta mode: strength 0 is the crop itself
    edited = run(latent(e4e_tiny, mode="replace", local=f"{local}:3"), face_crop)
    change = np.abs(edited - plain).mean(1)[0]  # (256, 256)
    inside = np.zeros((16, 16), bool)
    inside[9:13, 5:11] = True
    inside = np.kron(inside, np.ones((16, 16), bool))
    ratio = change[inside].mean() / max(change[~inside].mean(), 1e-9)
    print(
        f"local edit: mean change inside {change[inside].mean():.4f}, outside {change[~inside].mean():.5f}, "
        f"ratio {ratio:.1f}"
    )
    assert change[inside].mean() > 0.01 and ratio > 10
    delta = run(latent(e4e_tiny, mode="delta", local=f"{local}:3"), face_crop)
    assert not np.array_equal(delta, face_crop)


def test_local_edit_errors_are_one_sentence(e4e_tiny: Path, tmp_path: Path, capsys) -> None:
    from henshin.errors import InputNotFoundError, ModelError

    with pytest.raises(InputNotFoundError, match="henshin directions channels"):
        latent(e4e_tiny, local="nothing-here:2")
    bad = _local_file(tmp_path / "wide.local.json", 300)  # more channels than the 16-wide layer has
    with pytest.raises(ModelError, match="run `henshin directions channels`"):
        latent(e4e_tiny, local=f"{bad}:1")
    assert (
        main(
            [
                "directions",
                "channels",
                "open",
                "--attribute",
                "mouth_open",
                "--layer",
                "16",
                "--samples",
                "10",
                "--weights",
                str(e4e_tiny),
                "--device",
                "cpu",
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "showed a face" in err and err.count("\n") == 1
