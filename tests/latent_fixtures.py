"""Networks, direction files and helpers the latent filter's tests share (imported by those test modules)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from layouts import e4e_checkpoint, e4e_encoder_state, stylegan2_state

from henshin.filters.base import parse_params
from henshin.filters.latent.filter import LatentFilter
from henshin.filters.latent.params import LatentParams
from henshin.filters.reference import reference_crop
from henshin.runtimes import RuntimeOptions
from henshin.types import FaceContext

CPU = RuntimeOptions(runtime="torch", device="cpu")
# The official layouts at 256 output, narrowed so that a test runs in seconds on two cores.
TINY_CHANNELS = {4: 16, 8: 16, 16: 16, 32: 16, 64: 8, 128: 8, 256: 8}  # rosinality's 256-px generator, 16-d styles
TINY_DEPTHS = (16, 16, 16, 16)  # e4e's IR-SE50 layout at its narrowest (SE needs 16 channels)
TINY_ROWS, TINY_DIM = 14, 16
OFFICIAL_ROWS = 14  # the 256-px generator


def _unit(*shape: int, seed: int) -> torch.Tensor:
    v = torch.randn(*shape, generator=torch.Generator().manual_seed(seed))
    return v / v.norm(dim=-1, keepdim=True)


@pytest.fixture(scope="module")
def e4e_tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """e4e's released layout at its narrowest widths, with a narrow 256-px decoder (14 W+ rows of 16)."""
    path = tmp_path_factory.mktemp("latent") / "e4e-tiny.pt"
    decoder = stylegan2_state(256, TINY_CHANNELS, n_mlp=2, style_dim=TINY_DIM, seed=21)
    latent_avg = torch.randn(TINY_ROWS, TINY_DIM, generator=torch.Generator().manual_seed(22))
    torch.save(e4e_checkpoint(e4e_encoder_state(TINY_ROWS, TINY_DEPTHS, seed=23), decoder, 256, latent_avg), path)
    return path


def _direction_folders(root: Path, rows: int, dim: int) -> dict[str, Path]:
    """e4e-directions and interfacegan-directions folders in their released layouts, random contents."""
    e4e, ifg = root / "e4e-directions", root / "interfacegan-directions"
    e4e.mkdir(parents=True)
    ifg.mkdir(parents=True)
    for i, name in enumerate(("age", "smile")):
        torch.save(_unit(1, dim, seed=30 + i) * 3, e4e / f"{name}.pt")
    torch.save(_unit(1, rows, dim, seed=32), e4e / "pose.pt")
    comp = torch.linalg.qr(torch.randn(dim, dim, generator=torch.Generator().manual_seed(33)))[0].T
    comp = torch.cat([comp] * math.ceil(80 / dim))[:80].reshape(80, 1, dim)
    torch.save({"mean": torch.zeros(1, dim), "comp": comp, "std": torch.rand(80) + 0.5}, e4e / "ffhq_pca.pt")
    for i, attribute in enumerate(("age", "eyeglasses", "gender", "pose", "smile")):
        np.save(ifg / f"stylegan_ffhq_{attribute}_w_boundary.npy", _unit(1, dim, seed=40 + i).double().numpy())
    return {"e4e-directions": e4e, "interfacegan-directions": ifg}


@pytest.fixture(scope="module")
def tiny_directions(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return _direction_folders(tmp_path_factory.mktemp("dirs-tiny"), TINY_ROWS, TINY_DIM)


@pytest.fixture(scope="module")
def official_directions(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return _direction_folders(tmp_path_factory.mktemp("dirs-256"), OFFICIAL_ROWS, 512)


@pytest.fixture(scope="module")
def face_crop(face_png: Path) -> np.ndarray:
    """The astronaut's face, FFHQ-aligned: (1, 3, 256, 256) in [-1, 1]."""
    return reference_crop(face_png)


def latent(weights: Path, directions: dict[str, Path] | None = None, **params: object) -> LatentFilter:
    raw = {"weights": str(weights), **{k: str(v) for k, v in params.items()}}
    return LatentFilter(parse_params(LatentParams, raw), CPU, directions or {})


def run(filt: LatentFilter, crops: np.ndarray, times: list[float] | None = None, states: list | None = None,
        index: int = 0) -> np.ndarray:
    """One process call: item i is track i at ``times[i]`` (fresh states unless given)."""
    states = states or [filt.start_track(i) for i in range(len(crops))]
    times = times or [0.0] * len(crops)
    return filt.process(crops, [FaceContext(i, s, index, t) for i, (s, t) in enumerate(zip(states, times, strict=True))])


