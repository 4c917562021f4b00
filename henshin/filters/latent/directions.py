"""The named latent directions the latent filter knows, where their files live, and loading them.

Three released families, all for the FFHQ StyleGAN's W space:

- e4e's InterFaceGAN directions (registry ``e4e-directions``, found by e4e's authors for
  StyleGAN2 FFHQ): ``age``, ``smile`` (1, 512) and ``pose`` (1, 18, 512);
- GANSpace components (Härkönen et al. 2020; e4e's ``ffhq_pca.pt`` in the same registry entry):
  ``pc0``…``pc79`` move along one principal component by ``strength`` standard deviations, and
  e4e's named presets (``eye_openness``, ``ganspace_smile``, ``trimmed_beard``, ``white_hair``,
  ``lipstick``, from e4e's ``scripts/latent_editing`` presets, taken from the GANSpace
  repository) move ``strength`` × the preset's amount on the preset's rows;
- InterFaceGAN's own boundaries (registry ``interfacegan-directions``): ``gender``,
  ``eyeglasses``, ``ifg_age``, ``ifg_smile``, ``ifg_pose``; unit normals found for StyleGAN
  **v1** FFHQ, so on StyleGAN2 they are approximate.

e4e sets a GANSpace component's coordinate to the preset's value; here a component edit moves
the coordinate by a multiple of its std instead (a plain linear direction), so strength 0 is the
identity and edits add up, condition and ramp like every other direction.

The user's own directions (``henshin directions fit NAME``) live as ``NAME.npy`` (InterFaceGAN's
(1, 512) layout) with ``NAME.json`` beside it in ``<henshin cache>/directions``; ``edit=NAME``
and ``condition=NAME`` find them there when NAME is not a released direction.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from henshin.errors import InputNotFoundError, ModelError
from henshin.filters.latent.maths import load_direction
from henshin.home import cache_root

E4E_DIRECTIONS = "e4e-directions"
IFG_DIRECTIONS = "interfacegan-directions"
GANSPACE_FILE = "ffhq_pca.pt"
GANSPACE_COMPONENTS = 80  # e4e's ffhq_pca.pt holds 80 components
_PC = re.compile(r"^pc(\d+)$")
USER_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,63}$")  # fits edit='s NAME:STRENGTH@LAYERS grammar


@dataclass(frozen=True)
class Named:
    """A released direction: its registry model and file; for GANSpace the component, rows and amount."""

    model: str
    file: str
    component: int = -1
    rows: tuple[int, int] | None = None  # start, end (end excluded), as e4e's presets give them
    amount: float = 1.0

    @property
    def ganspace(self) -> bool:
        return self.component >= 0


def _ifg(attribute: str) -> Named:
    return Named(IFG_DIRECTIONS, f"stylegan_ffhq_{attribute}_w_boundary.npy")


DIRECTIONS: dict[str, Named] = {
    "age": Named(E4E_DIRECTIONS, "age.pt"),
    "smile": Named(E4E_DIRECTIONS, "smile.pt"),
    "pose": Named(E4E_DIRECTIONS, "pose.pt"),
    # e4e's GANSpace presets: (component, start row, end row, amount)
    "eye_openness": Named(E4E_DIRECTIONS, GANSPACE_FILE, 54, (7, 8), 20.0),
    "ganspace_smile": Named(E4E_DIRECTIONS, GANSPACE_FILE, 46, (4, 5), -20.0),
    "trimmed_beard": Named(E4E_DIRECTIONS, GANSPACE_FILE, 58, (7, 9), 20.0),
    "white_hair": Named(E4E_DIRECTIONS, GANSPACE_FILE, 57, (7, 10), -24.0),
    "lipstick": Named(E4E_DIRECTIONS, GANSPACE_FILE, 34, (10, 11), 20.0),
    "gender": _ifg("gender"),
    "eyeglasses": _ifg("eyeglasses"),
    "ifg_age": _ifg("age"),
    "ifg_smile": _ifg("smile"),
    "ifg_pose": _ifg("pose"),
}


def named(name: str) -> Named | None:
    """The released direction called ``name`` (``pcN`` for a GANSpace component), or None."""
    if name in DIRECTIONS:
        return DIRECTIONS[name]
    match = _PC.match(name)
    if match and int(match.group(1)) < GANSPACE_COMPONENTS:
        return Named(E4E_DIRECTIONS, GANSPACE_FILE, int(match.group(1)))
    return None


def known_names() -> str:
    """The known names, for error messages (released ones, then the user's own)."""
    return ", ".join([*DIRECTIONS, f"pc0-pc{GANSPACE_COMPONENTS - 1}", *user_names()])


def user_directions_dir() -> Path:
    """Where the user's own fitted directions live: ``<henshin cache>/directions``."""
    return cache_root() / "directions"


def user_file(name: str) -> Path | None:
    """The user's direction file called ``name`` (``NAME.npy``), or None when there is none."""
    if not USER_NAME.match(name):
        return None
    path = user_directions_dir() / f"{name}.npy"
    return path if path.is_file() else None


def user_names() -> list[str]:
    """The names of the user's own directions, sorted."""
    folder = user_directions_dir()
    return sorted(p.stem for p in folder.glob("*.npy") if USER_NAME.match(p.stem)) if folder.is_dir() else []


def is_path(text: str) -> bool:
    """Whether an edit or condition names a file rather than a released direction."""
    return "/" in text or "\\" in text or Path(text).suffix.lower() in (".pt", ".pth", ".npy", ".safetensors")


def model_file(folder: Path, name: str) -> Path:
    """A registry model's file in its folder (``age.pt``, or the ``age.safetensors`` an import converted it to)."""
    for candidate in (folder / name, (folder / name).with_suffix(".safetensors")):
        if candidate.is_file():
            return candidate
    raise ModelError(f"{folder} has no {name}; run `henshin models pull {folder.name}` "
                     f"or `henshin models import {folder.name} PATH`.")


def load_named(spec: Named, folder: Path) -> Tensor:
    """The direction ``spec`` from its model's folder: (1, 512) or (1, L, 512) float32."""
    loaded = load_direction(model_file(folder, spec.file))
    if spec.ganspace:
        if not isinstance(loaded, dict):
            raise ModelError(f"{folder / spec.file} is not a GANSpace file ({{\"mean\", \"comp\", \"std\"}}).")
        return ganspace_direction(loaded, spec.component, spec.amount)
    if isinstance(loaded, dict):
        raise ModelError(f"{folder / spec.file} is a GANSpace file; name a component (pcN) instead.")
    return loaded


def load_path(path: str) -> Tensor:
    """A direction file given by path: (1, 512) or (1, L, 512) float32 (a GANSpace file is refused)."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise InputNotFoundError(f"direction file {path} does not exist; check the path given in edit= or condition=.")
    loaded = load_direction(file)
    if isinstance(loaded, dict):
        raise ModelError(f"{path} is a GANSpace file; its components are edits pcN (with its file as the "
                         f"registry's {E4E_DIRECTIONS}), not one direction.")
    return loaded


def ganspace_direction(pca: dict[str, Tensor], component: int, amount: float = 1.0) -> Tensor:
    """(1, 512): ``amount`` standard deviations along GANSpace component ``component``."""
    comp, std = pca["comp"], pca["std"].reshape(-1)
    if not 0 <= component < comp.shape[0]:
        raise ModelError(f"the GANSpace file has {comp.shape[0]} components; pc{component} is not one of them.")
    return (comp[component].reshape(1, -1) * std[component] * amount).float()


def random_direction(name: str, n_latent: int, dim: int) -> Tensor:
    """A seeded random unit direction standing in for ``name`` (random weights): (1, 512), or per row for pose."""
    g = torch.Generator().manual_seed(zlib.crc32(name.encode()))
    if name == "pose":  # e4e's pose direction is per row
        d = torch.randn(1, n_latent, dim, generator=g)
    else:
        d = torch.randn(1, dim, generator=g)
    return d / d.norm(dim=-1, keepdim=True)
