"""What the latent filter does to a W+ code, as one per-row affine map: ``w' = keep ⊙ w + add``.

Edits along linear directions (InterFaceGAN, GANSpace, a direction file) add ``Σ sᵢ·dᵢ`` on
their rows; style mixing with references ``R`` of weight ``a`` per row keeps ``1 − a`` of the
face and adds ``a·R``; edits come after mixing, so a mix never overwrites an edit. Both
together are ``keep = 1 − a`` (L, 1) and ``add = a·R + Σ sᵢ·dᵢ`` (L, 512). Two plans mix
linearly (a ramp from one to the next is a plan too), and the identity is flagged so that
strength 0 with no mix gives the input back bit for bit.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from henshin.errors import OptionError
from henshin.filters.latent.maths import condition_direction, direction_rows
from henshin.filters.latent.params import EditItem, MixItem, layer_rows


@dataclass(frozen=True)
class EditPlan:
    """``w' = keep ⊙ w + add`` per W+ row: keep (L, 1), add (L, 512); both None for the identity."""

    keep: Tensor | None = None
    add: Tensor | None = None

    @property
    def identity(self) -> bool:
        return self.keep is None and self.add is None

    def apply(self, w_plus: Tensor) -> Tensor:
        """The plan on W+ (N, L, 512); the identity returns a copy of ``w_plus`` exactly."""
        if self.identity:
            return w_plus.clone()
        out = w_plus if self.keep is None else self.keep.to(w_plus) * w_plus
        return out + self.add.to(w_plus) if self.add is not None else out

    def to(self, device: torch.device | str) -> EditPlan:
        """The plan's tensors on ``device``."""
        if self.identity:
            return self
        return EditPlan(None if self.keep is None else self.keep.to(device), self.add.to(device))

    def full(self, n_latent: int, dim: int, device: torch.device | str) -> tuple[Tensor, Tensor]:
        """(keep, add) as full tensors on ``device``, the identity's included."""
        keep = self.keep.to(device) if self.keep is not None else torch.ones(n_latent, 1, device=device)
        add = self.add.to(device) if self.add is not None else torch.zeros(n_latent, dim, device=device)
        return keep, add

    @property
    def device(self) -> torch.device | None:
        """Where the plan's tensors are (None for the identity)."""
        held = self.add if self.add is not None else self.keep
        return None if held is None else held.device


IDENTITY = EditPlan()


def lerp_plans(a: EditPlan, b: EditPlan, r: float, n_latent: int, dim: int) -> EditPlan:
    """The plan a fraction ``r`` of the way from ``a`` to ``b`` (0: ``a``, 1: ``b``, exactly)."""
    if r >= 1 or (a.identity and b.identity):
        return b
    if r <= 0:
        return a
    device = b.device or a.device
    ka, aa = a.full(n_latent, dim, device)
    kb, ab = b.full(n_latent, dim, device)
    return EditPlan(ka + r * (kb - ka), aa + r * (ab - aa))


def build_plan(edits: Sequence[EditItem], default_layers: str, directions: Mapping[str, Tensor],
               conditions: Sequence[Tensor], references: Sequence[tuple[MixItem, Tensor]], mix_layers: str,
               n_latent: int, dim: int) -> EditPlan:
    """The plan for these edits (directions by name, already loaded), conditions and references.

    directions: name → (1, 512) or (1, L, 512); conditions: the condition directions, projected
    off each edit's direction row by row (keeping its length, so strengths mean the same);
    references: (item, W+ (1, L, 512)).
    """
    keep: Tensor | None = None
    add: Tensor | None = None
    if references:
        weights = torch.tensor([item.weight for item, _ in references], dtype=torch.float32)
        total = float(weights.sum())
        if total > 1:  # weights that add up past 1 are shares of the reference blend
            weights = weights / total
        rows = list(layer_rows(mix_layers, n_latent, "mix_layers"))
        mask = torch.zeros(n_latent, 1)
        mask[rows] = float(weights.sum())
        blend = sum(w * ref.reshape(n_latent, dim).float() for w, (_, ref) in zip(weights, references, strict=True))
        keep = 1.0 - mask
        add = torch.zeros(n_latent, dim)
        add[rows] = blend[rows]
    for item in edits:
        if item.strength == 0:
            continue
        rows = list(layer_rows(item.layers or default_layers, n_latent, f"layers of {item.direction}"))
        step = _rows_of(directions[item.direction], item.direction, n_latent, dim)
        if conditions:
            step = condition_rows(step, conditions, n_latent, dim, item.direction)
        delta = torch.zeros(n_latent, dim)
        delta[rows] = item.strength * step[rows]
        add = delta if add is None else add + delta
    return EditPlan(keep, add) if keep is not None or add is not None else IDENTITY


def condition_rows(step: Tensor, conditions: Sequence[Tensor], n_latent: int, dim: int, name: str) -> Tensor:
    """Each row of ``step`` (L, 512) projected off the same row of every condition, its length kept."""
    rows = [_rows_of(c, "condition", n_latent, dim) for c in conditions]

    def project(r: int) -> Tensor:
        if not step[r].any():
            return step[r].clone()  # a row the direction leaves alone stays alone
        try:
            return condition_direction(step[r][None], [c[r][None] for c in rows])[0] * step[r].norm()
        except ValueError:
            raise OptionError(f"edit {name} lies in the span of the conditions; conditioning would leave "
                              "nothing of it.") from None

    if all(bool((t == t[0]).all()) for t in (step, *rows)):  # one row for all: project once
        return project(0).expand(n_latent, dim).clone()
    return torch.stack([project(r) for r in range(n_latent)])


def _rows_of(direction: Tensor, name: str, n_latent: int, dim: int) -> Tensor:
    """A direction as (L, 512) (``direction_rows``); one that does not fit is refused, naming it."""
    try:
        return direction_rows(direction.float(), n_latent, dim)
    except ValueError:
        raise OptionError(f"direction {name} is {tuple(direction.shape)}, which does not fit this generator's "
                          f"W+ ({n_latent} rows of {dim}).") from None
