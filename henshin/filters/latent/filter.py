"""The latent filter: real faces edited in StyleGAN2's W+ space, steady over time (live and offline).

Per face and frame: the aligned crop → e4e → W+ (smoothed per face over time) → the edit
plan (InterFaceGAN / GANSpace directions with strengths and rows, conditioned, and style
mixing with reference faces; ``henshin.filters.latent.plan``), reached over ``ramp`` → StyleGAN2
→ the face. ``mode=delta`` (the default) adds G(edited) − G(unedited) to the real crop, so the
identity, background and detail the encoder loses are kept and strength 0 is the input
itself; ``mode=replace`` pastes G(edited). Items of all faces (and frames, offline) go through
each network as one batch; the encoder runs every ``encode_every`` frames per face (sooner
when the face changes), the held W+ filling the frames between through the smoothing.
"""

from __future__ import annotations

import dataclasses
import json
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from henshin.errors import ModelError
from henshin.filters.base import Filter, register
from henshin.filters.latent.directions import (
    is_path,
    load_named,
    load_path,
    named,
    random_direction,
    user_file,
)
from henshin.filters.latent.domains import check_fits, combine, describe, load_domain
from henshin.filters.latent.local import LocalEdit, load_local, parse_local
from henshin.filters.latent.networks import (
    ENCODER_SIZE,
    Decoder,
    LatentNets,
    layer_channels,
    load_nets,
    random_nets,
)
from henshin.filters.latent.params import EditItem, LatentParams, MixItem, layer_rows
from henshin.filters.latent.plan import EditPlan, build_plan
from henshin.filters.latent.state import GAP_S, LatentEuro, TrackLatent, thumbnail
from henshin.filters.networks import placement
from henshin.filters.reference import reference_crop
from henshin.kernels.masks import is_torch
from henshin.models.checkpoints import load_checkpoint
from henshin.types import FaceContext, FilterSpec

LATENT_FILES = (".pt", ".pth", ".npy", ".safetensors")  # a mix= reference given as a W+ code
PLAN_KEYS = ("edit", "layers", "condition", "mix", "mix_layers")
DOMAIN_KEYS = ("domains", "swap", "swap_coarse", "domain_mix")
MAX_GOVERNED_EVERY = 8


def quality_levels(every: int, size: int, min_size: int = 256) -> list[tuple[int, int]]:
    """(encode_every, generator size) from the asked quality down: the encoder less often first, then smaller output."""
    levels = [(every, size)]
    while levels[-1][0] * 2 <= max(MAX_GOVERNED_EVERY, every):
        levels.append((levels[-1][0] * 2, size))
    while levels[-1][1] // 2 >= min_size:
        levels.append((levels[-1][0], levels[-1][1] // 2))
    return levels


@register
class LatentFilter(Filter):
    """Stable StyleGAN2 latent edits (InterFaceGAN, GANSpace, style mixing) through e4e."""

    name = "latent"
    Params = LatentParams

    def __init__(self, params: LatentParams, runtime: Any = None, weights: Any = None) -> None:
        super().__init__(params, runtime, weights)
        self._array, self._device = placement(runtime, has_torch_module=True)
        self._references: dict[str, Tensor] = {}
        self._raw_domains: dict[str, Any] = {}  # domain generators as read, before swap / domain_mix
        self._decoders: dict[str, Decoder] = {}  # per domain name or path: the generator it decodes with
        self.last_latents: dict[int, Tensor] = {}  # per track: the W+ the generator was given last (edited)
        self.last_bases: dict[int, Tensor] = {}  # per track: the smoothed, unedited W+ it came from
        self.level = 0  # the step of ``_levels`` the engine's live governor asked for
        self._version = 0
        self._load()

    @classmethod
    def required_models(cls, params: LatentParams) -> tuple[str, ...]:
        if params.random_weights:
            return ()
        models = [] if params.weights_is_path else [params.weights]
        for name in params.directions_used():
            spec = None if is_path(name) else named(name)  # None for a path or the user's own direction
            if spec is not None and spec.model not in models:
                models.append(spec.model)
        models += [d for d in params.domains_used() if not is_path(d) and d not in models]
        return tuple(models)

    # -- loading ---------------------------------------------------------------------------------

    def _load(self) -> None:
        p = self.params
        if p.random_weights:
            self.nets: LatentNets = random_nets()
        else:
            path = Path(p.weights).expanduser() if p.weights_is_path else self.weights_file(p.weights)
            self.nets = load_nets(path)
        self.nets.open(self.runtime)
        self._references, self._raw_domains = {}, {}
        self._size = self.nets.output_size(self.params.size)
        self._load_domains()
        self._set_size()
        self._build_plan()
        self._load_local()

    def _load_local(self) -> None:
        """The channel-local edit ``local=`` names, checked against the generator (None when off or strength 0)."""
        spec = parse_local(self.params.local)
        self._local: tuple[LocalEdit, float, str] | None = None
        if spec is None or spec[1] == 0:
            return
        edit = load_local(spec[0])
        n = layer_channels(self.nets.generator, edit.layer)
        if n == 0 or max(edit.channels) >= n:
            raise ModelError(f"local edit {spec[0]} was found for a generator with a {edit.layer}-px layer of more "
                             f"channels than this one has ({n}); run `henshin directions channels` with these weights.")
        tag = f"{zlib.crc32(json.dumps([edit.to_json(), spec[1]]).encode()):08x}"
        self._local = (edit, spec[1], tag)

    def _set_size(self) -> None:
        self._size = self.nets.output_size(self.params.size)
        self._levels = quality_levels(self.params.encode_every, self._size, min(256, self._size))
        self.level = min(self.level, len(self._levels) - 1)
        for decoder in (self.nets.decoder, *self._decoders.values()):
            decoder.synthesis(self.runtime, self._size)  # built now: errors show at start, switching never waits

    # -- domains ----------------------------------------------------------------------------------

    def _load_domains(self) -> None:
        """Every generator ``domain`` and ``domains`` name, combined with the base as swap and domain_mix say."""
        self._decoders = {spec: self._decoder_for(spec) for spec in self.params.domains_used()}
        self._raw_domains = {spec: g for spec, g in self._raw_domains.items() if spec in self._decoders}

    def _decoder_for(self, spec: str) -> Decoder:
        p = self.params
        if spec not in self._raw_domains:
            path = Path(spec).expanduser() if is_path(spec) else self.weights_file(spec)
            generator = load_domain(path)
            check_fits(generator, self.nets.generator, spec)
            self._raw_domains[spec] = generator
        generator = combine(self.nets.generator, self._raw_domains[spec], p.swap, p.swap_coarse, p.domain_mix)
        decoder = Decoder(generator, f"{self.nets.key}-{describe(spec)}-swap{p.swap}{p.swap_coarse}-mix{p.domain_mix:g}")
        # One call now: a runtime's first call allocates (and a GPU one autotunes), which a switch must not wait for.
        w_plus = torch.zeros(1, self.nets.n_latent, self.nets.style_dim, device=self._device)
        self._run(decoder.synthesis(self.runtime, self._size), w_plus)
        return decoder

    @property
    def decoder(self) -> Decoder:
        """The generator faces are decoded with now: the active domain's, or the encoder's own."""
        spec = self.params.active_domain
        return self._decoders[spec] if spec else self.nets.decoder

    @property
    def mode(self) -> str:
        """``delta`` or ``replace`` (``auto``: replace with a domain, since its faces are not photos)."""
        if self.params.mode != "auto":
            return self.params.mode
        return "replace" if self.params.active_domain else "delta"

    def _build_plan(self) -> None:
        p, n, dim = self.params, self.nets.n_latent, self.nets.style_dim
        layer_rows(p.layers, n)
        layer_rows(p.mix_layers, n, "mix_layers")
        directions = {name: self._direction(name) for name in p.directions_used()}
        edits = [self._preset_rows(item) for item in p.edits]
        references = [(item, self._reference(item)) for item in p.references]
        plan = build_plan(edits, p.layers, directions, [directions[c] for c in p.conditions], references,
                          p.mix_layers, n, dim)
        self.plan: EditPlan = plan.to(self._device)
        self._version += 1

    def _direction(self, name: str) -> Tensor:
        if is_path(name):
            return load_path(name)
        spec = named(name)
        own = user_file(name) if spec is None else None
        if own is not None:  # the user's own fitted direction: a file of theirs, used with any weights
            return load_path(str(own))
        if self.params.random_weights:
            return random_direction(name, self.nets.n_latent, self.nets.style_dim)
        return load_named(spec, self.weights_file(spec.model))

    @staticmethod
    def _preset_rows(item: EditItem) -> EditItem:
        """A GANSpace preset without @rows gets the preset's rows."""
        spec = None if is_path(item.direction) else named(item.direction)
        if item.layers is None and spec is not None and spec.rows is not None:
            return dataclasses.replace(item, layers=f"{spec.rows[0]}-{spec.rows[1] - 1}")
        return item

    def _reference(self, item: MixItem) -> Tensor:
        """A reference's W+ (1, L, 512) on the CPU: a W+ file as stored, or a picture's face encoded (once)."""
        if item.path not in self._references:
            if Path(item.path).suffix.lower() in LATENT_FILES:
                self._references[item.path] = _latent_file(item.path, self.nets.n_latent, self.nets.style_dim)
            else:
                crop = torch.from_numpy(reference_crop(item.path, ENCODER_SIZE))
                self._references[item.path] = self._encode(crop.to(self._device)).cpu()
        return self._references[item.path]

    # -- engine interface -------------------------------------------------------------------------

    @property
    def spec(self) -> FilterSpec:
        # A domain changes the face's outline: its whole crop is pasted inside a feathered border.
        paste = self.params.paste if self.params.paste != "auto" else "crop" if self.params.active_domain else "face"
        return FilterSpec(consumes="crops", size=self.params.crop, value_range=(-1.0, 1.0), array=self._array,
                          device=self._device, devices=("cpu", "cuda"), mask=paste)

    def start_track(self, track_id: int) -> TrackLatent:
        return TrackLatent(LatentEuro())

    def end_track(self, track_id: int, state: Any) -> None:
        self.last_latents.pop(track_id, None)
        self.last_bases.pop(track_id, None)

    def set_params(self, **changes: str) -> None:
        old = self.params
        kept = (self.nets, self._references, self._raw_domains, self._decoders, self._size, self._levels, self.level,
                self.plan, self._version, self._local)
        super().set_params(**changes)
        try:
            self._apply(old)
        except BaseException:  # a change that fails leaves the filter as it was
            self.params = old
            (self.nets, self._references, self._raw_domains, self._decoders, self._size, self._levels, self.level,
             self.plan, self._version, self._local) = kept
            raise

    def _apply(self, old: LatentParams) -> None:
        p = self.params
        if (p.weights, p.random_weights) != (old.weights, old.random_weights):
            self._load()
            return
        if any(getattr(p, k) != getattr(old, k) for k in DOMAIN_KEYS):
            self._load_domains()
        elif p.active_domain and p.active_domain not in self._decoders:  # not preloaded: read now (a stall)
            self._decoders = {**self._decoders, p.active_domain: self._decoder_for(p.active_domain)}
        if (p.size, p.encode_every) != (old.size, old.encode_every):
            self._set_size()
        if any(getattr(p, k) != getattr(old, k) for k in PLAN_KEYS):
            self._build_plan()
        if p.local != old.local:
            self._load_local()

    @property
    def quality_steps(self) -> int:
        """Live: the steps below the asked quality (the encoder less often, then a smaller output); 0 unless ``govern``."""
        return len(self._levels) - 1 if self.params.govern else 0

    def set_quality(self, step: int) -> None:
        """Live: run at ``step`` of ``quality_levels`` (the engine's latency governor chooses it)."""
        self.level = min(max(step, 0), self.quality_steps)

    # -- the work ---------------------------------------------------------------------------------

    def process(self, batch: Any, faces: Sequence[FaceContext]) -> Any:
        crops = torch.from_numpy(np.ascontiguousarray(batch)) if not is_torch(batch) else batch.float()
        every, size = self._levels[self.level]
        base = self._latents(crops, faces, every)
        p, n_latent, dim = self.params, self.nets.n_latent, self.nets.style_dim
        plans = [c.state.plan_at(c.time, self.plan, self._version, p.ramp_s, n_latent, dim) for c in faces]
        used = torch.stack([plan.apply(base[i: i + 1])[0] for i, plan in enumerate(plans)])
        for c, w, b in zip(faces, used, base, strict=True):
            self.last_latents[c.track_id], self.last_bases[c.track_id] = w, b
        if self.mode == "replace":
            out = self._synthesize(used, size, local=True).clamp_(-1.0, 1.0)
        else:
            edited = [i for i, plan in enumerate(plans) if not plan.identity or self._local is not None]
            out = self._delta(crops, base, used, edited, size)
        return out if is_torch(batch) else out.numpy()

    def _latents(self, crops: Tensor, faces: Sequence[FaceContext], every: int) -> Tensor:
        """Each item's smoothed, unedited W+ (N, L, 512); the encoder runs on the items that need it, as one batch."""
        thumbs = thumbnail(crops) if every > 1 else None
        chosen = []
        for i, c in enumerate(faces):
            state: TrackLatent = c.state
            if state.last_time is not None and not 0 <= c.time - state.last_time <= GAP_S:
                state.restart(c.time)
            state.last_time = c.time
            if state.needs_encoding(c.index, None if thumbs is None else thumbs[i], every):
                chosen.append(i)
                state.encoded_index = c.index
                state.thumb = None if thumbs is None else thumbs[i]
        encoded = self._encode(crops[chosen]) if chosen else None
        rows = []
        for i, c in enumerate(faces):
            state = c.state
            if i in chosen:
                state.held, state.encodes = encoded[chosen.index(i)], state.encodes + 1
            rows.append(state.smooth(state.held, c.time, self.params.smooth))
        return torch.stack(rows)

    def _encode(self, crops: Tensor) -> Tensor:
        """Crops (N, 3, S, S) in [-1, 1] → W+ (N, L, 512) on the filter's device."""
        if crops.shape[-1] != ENCODER_SIZE:
            crops = F.interpolate(crops, size=(ENCODER_SIZE, ENCODER_SIZE), mode="bilinear", align_corners=False,
                                  antialias=True)
        return self._run(self.nets.encode, crops)

    def _synthesize(self, w_plus: Tensor, size: int, local: bool = False) -> Tensor:
        """G(w_plus) at ``size``; with ``local``, with the channel-local edit (when one is on)."""
        if local and self._local is not None:
            edit, strength, tag = self._local
            n = layer_channels(self.decoder.generator, edit.layer)
            runtime = self.decoder.local_synthesis(self.runtime, size, edit.layer, edit.offset(strength, n), tag)
            return self._run(runtime, w_plus)
        return self._run(self.decoder.synthesis(self.runtime, size), w_plus)

    def _delta(self, crops: Tensor, base: Tensor, used: Tensor, edited: list[int], size: int) -> Tensor:
        """Crops with G(edited) − G(unedited) added on the edited items; the others are the crops themselves."""
        out = crops.clone()
        if not edited:
            return out
        if self._local is None:  # one batch through the generator
            k = len(edited)
            images = self._synthesize(torch.cat([used[edited], base[edited]]), size)
            diff = images[:k] - images[k:]
        else:
            diff = self._synthesize(used[edited], size, local=True) - self._synthesize(base[edited], size)
        side = crops.shape[-1]
        if diff.shape[-1] != side:
            diff = F.interpolate(diff, size=(side, side), mode="bilinear", align_corners=False,
                                 antialias=diff.shape[-1] > side)
        out[edited] = (crops[edited] + diff.to(crops)).clamp_(-1.0, 1.0)
        return out

    def _run(self, runtime: Any, x: Tensor) -> Tensor:
        """A network on a torch batch: NumPy in and out where its runtime lives on the CPU side."""
        if self._array == "numpy":
            return torch.from_numpy(np.asarray(runtime(np.ascontiguousarray(x.detach().cpu().numpy()))))
        return runtime(x.to(self._device))


def _latent_file(path: str, n_latent: int, dim: int) -> Tensor:
    """A W+ code saved as a file: (L, 512), (1, L, 512), or one w (512,)/(1, 512) for every row → (1, L, 512)."""
    obj = load_checkpoint(Path(path).expanduser())
    w = torch.from_numpy(np.asarray(obj, np.float32)) if isinstance(obj, np.ndarray) else obj
    if not isinstance(w, Tensor) or w.shape[-1] != dim or w.numel() not in (dim, n_latent * dim):
        shape = tuple(w.shape) if isinstance(w, Tensor) else type(w).__name__
        raise ModelError(f"{path} is not a W+ code for this generator: expected ({n_latent}, {dim}) or ({dim},), "
                         f"got {shape}.")
    return w.float().reshape(1, -1, dim).expand(1, n_latent, dim).clone()

