"""Artistic domains: StyleGAN2 generators adapted from FFHQ (toon, painting, sketch) that keep its W+ space.

One-shot and few-shot methods (JoJoGAN, StyleGAN-NADA, DIFA, Toonify's fine-tuning) fine-tune
the FFHQ generator into a new domain without touching how W+ drives it, so a face encoded by
e4e and decoded by the adapted generator is the same person, pose and expression in the new
style. Their releases are rosinality-format checkpoints: ``{"g_ema": state}`` (StyleGAN-NADA,
rosinality's training files) or ``{"g": state}`` (JoJoGAN's styles).

Two ways to combine a domain with the base (FFHQ) generator, both done once when loaded:

- layer swapping (Pinkney & Adler 2020, "Resolution Dependent GAN Interpolation for Controllable
  Image Synthesis Between Domains"): the layers up to resolution K from one generator, the rest
  from the other — the domain's coarse layers with FFHQ's fine ones give toon shapes with photo
  texture (Toonify), the reverse gives photo shapes with the domain's texture;
- weight interpolation: every weight ``(1 − a)·base + a·domain``.

The mapping network always comes from the base: W+ is the encoder's, so it is the base's.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from henshin.errors import ModelError
from henshin.models.checkpoints import load_checkpoint
from henshin.nets.stylegan2 import (
    StyleGAN2Generator,
    generator_config,
    generator_from_checkpoint,
)

FFHQ_SIZE, FFHQ_STYLE = 1024, 512  # the released FFHQ config-f generator every adapted release starts from
_CONV = re.compile(r"^convs\.(\d+)\.")
_RGB = re.compile(r"^to_rgbs\.(\d+)\.")
_NOISE = re.compile(r"^noises\.noise_(\d+)$")


def load_domain(path: Path | str) -> StyleGAN2Generator:
    """An adapted generator from a rosinality-format file (``g_ema``, or JoJoGAN's ``g``), loaded strictly."""
    ckpt = load_checkpoint(Path(path))
    if isinstance(ckpt, Mapping) and "g_ema" not in ckpt and isinstance(ckpt.get("g"), Mapping):
        ckpt = {"g_ema": ckpt["g"], "latent_avg": ckpt.get("latent_avg")}
    return generator_from_checkpoint(ckpt, path).requires_grad_(False)


def load_ffhq_domain(path: Path | str) -> StyleGAN2Generator:
    """The registry's check for an adapted FFHQ generator: 1024 px with 512-d styles (18 W+ rows)."""
    net = load_domain(path)
    if (net.size, net.style_dim) != (FFHQ_SIZE, FFHQ_STYLE):
        raise ModelError(f"{path} holds a {net.size}-px generator with {net.style_dim}-d styles; an adapted FFHQ "
                         f"generator is {FFHQ_SIZE} px with {FFHQ_STYLE}-d styles, as the FFHQ generator it came from.")
    return net


def check_fits(domain: StyleGAN2Generator, base: StyleGAN2Generator, name: str) -> None:
    """A domain must share the base generator's size and W space; one that does not is one sentence naming both."""
    if (domain.size, domain.style_dim, domain.n_latent) != (base.size, base.style_dim, base.n_latent):
        raise ModelError(f"domain {name} is a {domain.size}-px generator with {domain.style_dim}-d styles, but the "
                         f"encoder's generator is {base.size} px with {base.style_dim}-d styles; a domain must be "
                         "adapted from that same generator (same size, same W space).")


def layer_resolution(key: str) -> int | None:
    """The resolution a synthesis parameter works at (rosinality's names); None for the mapping network."""
    if key.startswith("style."):
        return None
    if key.startswith(("input.", "conv1.", "to_rgb1.")):
        return 4
    for pattern, res in ((_CONV, lambda i: 2 ** (i // 2 + 3)), (_RGB, lambda i: 2 ** (i + 3)),
                         (_NOISE, lambda i: 2 ** ((i + 5) // 2))):
        match = pattern.match(key)
        if match:
            return res(int(match.group(1)))
    raise ModelError(f"{key} is not a parameter of rosinality's StyleGAN2 generator.")


def swap_layers(base: Mapping[str, Tensor], domain: Mapping[str, Tensor], resolution: int,
                coarse_from: str = "domain") -> dict[str, Tensor]:
    """A state dict with the layers up to ``resolution`` from one generator and the rest from the other.

    ``coarse_from="domain"``: the domain's coarse layers (shapes) with the base's finer ones (Toonify);
    ``"base"``: the reverse. The mapping network is the base's.
    """
    coarse, fine = (domain, base) if coarse_from == "domain" else (base, domain)
    out = {}
    for key in base:
        res = layer_resolution(key)
        source = base if res is None else coarse if res <= resolution else fine
        out[key] = source[key].clone()
    return out


def mix_weights(base: Mapping[str, Tensor], domain: Mapping[str, Tensor], amount: float) -> dict[str, Tensor]:
    """Every synthesis weight ``(1 − amount)·base + amount·domain`` (0: the base, 1: the domain, exactly)."""
    out = {}
    for key, value in base.items():
        if layer_resolution(key) is None or amount <= 0 or not value.is_floating_point():
            out[key] = value.clone()
        elif amount >= 1:
            out[key] = domain[key].clone()
        else:
            out[key] = torch.lerp(value, domain[key].to(value), amount)
    return out


def combine(base: StyleGAN2Generator, domain: StyleGAN2Generator, swap: int, coarse_from: str,
            amount: float) -> StyleGAN2Generator:
    """The generator a domain decodes with: ``amount`` of the way from the base, then layer-swapped at ``swap`` (0: no swap).

    With ``amount`` 1 and no swap the domain comes back as it is.
    """
    if swap <= 0 and amount >= 1:
        return domain
    base_state = base.state_dict()
    state = mix_weights(base_state, domain.state_dict(), amount)
    if swap > 0:
        state = swap_layers(base_state, state, swap, coarse_from)
    out = StyleGAN2Generator(**generator_config(base_state, "the base generator")).eval()
    out.load_state_dict(state, strict=True)
    out.latent_avg = base.latent_avg
    return out.requires_grad_(False)


def describe(spec: Any) -> str:
    """A domain's name for messages and runtime keys: a path's file stem, else the name."""
    text = str(spec)
    return Path(text).stem if ("/" in text or "\\" in text or Path(text).suffix) else text
