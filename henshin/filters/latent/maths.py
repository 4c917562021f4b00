"""W+ edit maths: linear directions (InterFaceGAN), GANSpace components, style mixing.

Pure functions on torch tensors; none modifies its inputs. ``w_plus`` is (N, L, 512): L rows
of a StyleGAN2 W+ code (18 at 1024 px). A direction is (512,) or (1, 512) for every row,
(L, 512) or (1, L, 512) per row.

Direction files: e4e's ``editings/interfacegan_directions/{age,smile}.pt`` (1, 512) and
``pose.pt`` (1, 18, 512); e4e's ``editings/ganspace_pca/ffhq_pca.pt`` ``{"mean": (1, 512),
"comp": (80, 1, 512), "std": (80,)}``; InterFaceGAN's ``boundaries/*.npy`` (1, 512) float64
unit normals, found for StyleGAN (v1) FFHQ's W space: on StyleGAN2 they are approximate.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from henshin.errors import ModelError
from henshin.models.checkpoints import load_checkpoint

COARSE_END, MIDDLE_END = 4, 8  # StyleGAN's coarse (4-8 px), middle (16-32 px) and fine style groups
GANSPACE_KEYS = ("mean", "comp", "std")


def load_direction(path: Path | str) -> Tensor | dict[str, Tensor]:
    """A direction file as stored, float32 on the CPU ((1, 512) or (1, L, 512); ``.npy`` converted).

    A GANSpace file gives the dict ``{"mean", "comp", "std"}``. Read weights-only; anything
    else raises ModelError naming the file.
    """
    obj = load_checkpoint(Path(path))
    if isinstance(obj, np.ndarray):
        obj = torch.from_numpy(np.asarray(obj, dtype=np.float32))
    if isinstance(obj, Tensor) and obj.is_floating_point() and 1 <= obj.dim() <= 3:
        return obj.detach().float().cpu().contiguous()
    if isinstance(obj, Mapping) and all(isinstance(obj.get(k), Tensor) for k in GANSPACE_KEYS):
        return {k: obj[k].detach().float().cpu().contiguous() for k in GANSPACE_KEYS}
    what = f"a {tuple(obj.shape)} tensor" if isinstance(obj, Tensor) else type(obj).__name__
    raise ModelError(f"{path} is not a latent direction: expected a (1, 512) or (1, L, 512) tensor or a "
                     f"GANSpace {{\"mean\", \"comp\", \"std\"}} file, got {what}.")


def apply_edit(w_plus: Tensor, direction: Tensor, strength: float, layers: Iterable[int] | None = None) -> Tensor:
    """``w_plus + strength·direction`` on the rows in ``layers`` (None: all); strength 0 gives ``w_plus``."""
    if strength == 0:
        return w_plus.clone()
    rows = _rows(layers, w_plus.shape[1])
    step = direction_rows(direction.to(w_plus), w_plus.shape[1], w_plus.shape[2])[None]
    out = w_plus.clone()
    out[:, rows] = w_plus[:, rows] + strength * step[:, rows]
    return out


def mix_styles(w_plus: Tensor, w_ref: Tensor, layers: Iterable[int]) -> Tensor:
    """``w_plus`` with the rows in ``layers`` taken from ``w_ref`` ((N, L, 512), or (1, L, 512) for all)."""
    if w_ref.shape[1:] != w_plus.shape[1:] or w_ref.shape[0] not in (1, w_plus.shape[0]):
        raise ValueError(f"mix_styles: w_ref {tuple(w_ref.shape)} does not fit w_plus {tuple(w_plus.shape)}.")
    rows = _rows(layers, w_plus.shape[1])
    out = w_plus.clone()
    out[:, rows] = w_ref[:, rows].to(w_plus)
    return out


def condition_direction(primal: Tensor, others: Sequence[Tensor]) -> Tensor:
    """InterFaceGAN's conditional manipulation: ``primal`` less its projection on the span of ``others``.

    The result has unit norm and is orthogonal to every direction in ``others``
    (``project_boundary`` in InterFaceGAN's ``utils/manipulator.py``, for any number of
    conditions); with no conditions, ``primal`` comes back unchanged.
    """
    if not others:
        return primal.clone()
    p = primal.detach().double().reshape(1, -1)
    c = torch.cat([o.detach().double().reshape(1, -1).to(p.device) for o in others])
    coef = torch.linalg.lstsq(c @ c.T, c @ p.T).solution  # least squares: conditions may be dependent
    new = p - coef.T @ c
    norm = new.norm()
    if norm < 1e-12:
        raise ValueError("condition_direction: the primal direction lies in the span of the conditions.")
    return (new / norm).reshape(primal.shape).to(torch.float32)


def ganspace_edit(w_plus: Tensor, pca: Mapping[str, Tensor], component: int, start: int, end: int,
                  strength: float) -> Tensor:
    """e4e's GANSpace edit: rows ``start…end−1`` moved along ``comp[component]`` so that the
    component's coordinate, measured on row 0 in units of its std, becomes ``strength``."""
    mean = pca["mean"].to(w_plus).reshape(-1)
    comp = pca["comp"][component].to(w_plus).reshape(-1)
    std = pca["std"][component].to(w_plus)
    coord = (w_plus[:, 0] - mean) @ comp / std  # (N,)
    delta = (strength - coord)[:, None] * comp * std
    out = w_plus.clone()
    out[:, start:end] = w_plus[:, start:end] + delta[:, None]
    return out


def layer_groups(n_latent: int) -> dict[str, range]:
    """W+ rows by the resolution they drive: coarse 0-3 (pose, shape), middle 4-7, fine 8+ (colour, texture)."""
    return {"coarse": range(0, COARSE_END), "middle": range(COARSE_END, MIDDLE_END),
            "fine": range(MIDDLE_END, n_latent)}


def _rows(layers: Iterable[int] | None, n_rows: int) -> list[int]:
    rows = list(range(n_rows)) if layers is None else sorted(set(int(i) for i in layers))
    if rows and not (0 <= rows[0] and rows[-1] < n_rows):
        raise ValueError(f"layers must lie in 0..{n_rows - 1}, got {rows}.")
    return rows


def direction_rows(direction: Tensor, n_rows: int, dim: int) -> Tensor:
    """A direction ((D,), (1, D), (L, D) or (1, L, D)) as (L, D); ValueError when it does not fit."""
    d = direction
    if d.dim() == 3 and d.shape[0] == 1:
        d = d[0]
    if d.dim() == 1:
        d = d[None]
    if d.dim() != 2 or d.shape[-1] != dim or d.shape[0] not in (1, n_rows):
        raise ValueError(f"a direction for W+ of {n_rows} rows of {dim} is ({dim},), (1, {dim}), ({n_rows}, {dim}) "
                         f"or (1, {n_rows}, {dim}); got {tuple(direction.shape)}.")
    return d.expand(n_rows, dim)

