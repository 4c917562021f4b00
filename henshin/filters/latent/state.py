"""Per-face state of the latent filter: W+ smoothing over time, when to encode, and the edit ramp.

Smoothing is causal in both live and offline runs: a filter must return each output when it
is called, so it cannot wait for the frames after it. Offline the engine already smooths the
alignment over a centred window, so the encoder sees a steady crop; what is left is the
encoder's own frame-to-frame noise, which a One Euro filter on the whole W+ code removes with
little lag. Every track ends at a shot change (and a new face gets a fresh state), so the
smoothing never crosses a cut; a face unseen for ``GAP_S`` (the effect was switched off, or
it left) starts afresh too, ramp included.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from henshin.filters.latent.plan import IDENTITY, EditPlan, lerp_plans

GAP_S = 0.5  # as the engine's temporal memory (henshin.engine.temporal.MAX_GAP_S)
MIN_CUTOFF_HZ = 1.0  # at smooth=1: a still face's latent follows changes slower than 1 Hz
BETA = 2.0  # cut-off rise per unit of W+ speed (RMS over coordinates, per second)
D_CUTOFF_HZ = 1.0  # the speed estimate's own low-pass (Casiez et al.'s default)
THUMB = 16  # side of the thumbnail compared to decide whether a face changed since its last encoding
ENCODE_CHANGE = 0.04  # mean absolute thumbnail change (in [-1, 1] units) that calls for a new encoding


class LatentEuro:
    """The One Euro filter (Casiez et al., CHI 2012) on a whole W+ code, one cut-off for every coordinate.

    The speed that raises the cut-off is the RMS over coordinates of the low-passed derivative,
    so random encoder noise (whose derivative averages out) is smoothed hard while a real
    change of expression (a consistent derivative) comes through with little lag. A single
    cut-off keeps the code on the line between two latents instead of bending it per coordinate.
    Tensor maths only: nothing waits for the GPU.
    """

    def __init__(self, min_cutoff: float = MIN_CUTOFF_HZ, beta: float = BETA, d_cutoff: float = D_CUTOFF_HZ) -> None:
        self.min_cutoff, self.beta, self.d_cutoff = min_cutoff, beta, d_cutoff
        self.reset()

    def reset(self) -> None:
        """Forget the past: the next value comes back as it is."""
        self._x: Tensor | None = None
        self._dx: Tensor | None = None
        self._t = 0.0

    def __call__(self, w: Tensor, t: float) -> Tensor:
        """Filter W+ ``w`` (L, 512) observed at time ``t`` seconds."""
        if self._x is None or t <= self._t:
            self._x, self._dx, self._t = w.clone(), torch.zeros_like(w), t
            return self._x.clone()
        dt = t - self._t
        self._dx = self._dx + _alpha(self.d_cutoff, dt) * ((w - self._x) / dt - self._dx)
        cutoff = self.min_cutoff + self.beta * self._dx.square().mean().sqrt()
        self._x = self._x + _alpha(cutoff, dt) * (w - self._x)
        self._t = t
        return self._x.clone()


def _alpha(cutoff: float | Tensor, dt: float) -> float | Tensor:
    return 1.0 / (1.0 + 1.0 / (2 * math.pi * cutoff * dt))


def thumbnail(crops: Tensor) -> Tensor:
    """(N, 3, S, S) crops → (N, 3, THUMB, THUMB) block means (S a multiple of THUMB)."""
    n, c, s, _ = crops.shape
    k = s // THUMB
    return crops[:, :, : k * THUMB, : k * THUMB].reshape(n, c, THUMB, k, THUMB, k).mean(dim=(3, 5))


@dataclass
class TrackLatent:
    """One face's latent state: its W+ smoother, the last encoding, and its edit ramp."""

    euro: LatentEuro
    held: Tensor | None = None  # the last encoded W+ (L, 512)
    encoded_index: int | None = None
    thumb: Tensor | None = None
    last_time: float | None = None
    plan_from: EditPlan = IDENTITY
    plan_to: EditPlan | None = None
    version: int = -1
    ramp_start: float = 0.0
    encodes: int = 0

    def restart(self, t: float) -> None:
        """Start afresh (after a gap): no smoothing memory, a new encoding, the ramp from zero."""
        self.euro.reset()
        self.held = self.thumb = self.encoded_index = None
        self.plan_from, self.ramp_start = IDENTITY, t

    def needs_encoding(self, index: int, thumb: Tensor | None, every: int) -> bool:
        """Whether this frame's crop goes through the encoder (first frame, every ``every``, or a changed face)."""
        if every <= 1 or self.encoded_index is None or index - self.encoded_index >= every:
            return True
        return thumb is not None and self.thumb is not None and \
            float((thumb - self.thumb).abs().mean()) > ENCODE_CHANGE

    def smooth(self, w: Tensor, t: float, strength: float) -> Tensor:
        """This frame's W+ after smoothing at ``strength`` (0: off, the W+ as it is)."""
        if strength <= 0:
            self.euro.reset()
            return w
        self.euro.min_cutoff = MIN_CUTOFF_HZ / strength
        return self.euro(w, t)

    def plan_at(self, t: float, plan: EditPlan, version: int, ramp_s: float, n_latent: int, dim: int) -> EditPlan:
        """The plan to use at time ``t``: ``plan`` reached over ``ramp_s`` from where the last one stood."""
        if version != self.version:
            if self.plan_to is None:
                self.plan_from, self.ramp_start = IDENTITY, t
            else:
                self.plan_from = self._current(t, ramp_s, n_latent, dim)
                self.ramp_start = t
            self.plan_to, self.version = plan, version
        return self._current(t, ramp_s, n_latent, dim)

    def ramp_fraction(self, t: float, ramp_s: float) -> float:
        """How far the ramp is at ``t``: 0 at its start, 1 from ``ramp_s`` seconds on."""
        return 1.0 if ramp_s <= 0 else min(max((t - self.ramp_start) / ramp_s, 0.0), 1.0)

    def _current(self, t: float, ramp_s: float, n_latent: int, dim: int) -> EditPlan:
        r = self.ramp_fraction(t, ramp_s)
        if r >= 1:
            self.plan_from = self.plan_to
        return lerp_plans(self.plan_from, self.plan_to, r, n_latent, dim)
