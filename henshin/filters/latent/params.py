"""The latent filter's parameters: one frozen dataclass, and the small grammars inside its strings.

``edit=smile:2,age:-3@coarse,/path/dir.pt:1.5@4-7``: NAME[:STRENGTH][@LAYERS] items, NAME a
released direction (``henshin.filters.latent.directions``) or a direction file; LAYERS
``all``, ``coarse`` (rows 0-3: pose, shape), ``middle`` (4-7: features, expression), ``fine``
(8+: colour, texture), ``A-B`` or ``N``. ``mix=ref.jpg:0.7,other.png:0.3``: reference faces
(pictures, or W+ files .pt/.npy) with weights. ``ramp=2s`` (or ``500ms``, or seconds).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Literal

from henshin.errors import InputNotFoundError, OptionError
from henshin.filters.base import check_range
from henshin.filters.latent.directions import is_path, known_names, named, user_file
from henshin.filters.latent.local import local_file, parse_local
from henshin.filters.latent.maths import layer_groups

LAYER_NAMES = ("all", "coarse", "middle", "fine")
MAX_ENCODE_EVERY = 30


@dataclass(frozen=True)
class EditItem:
    """One edit: a released direction's name or a file path, its strength, and its rows (None: ``layers``)."""

    direction: str
    strength: float = 1.0
    layers: str | None = None


@dataclass(frozen=True)
class MixItem:
    """One reference face (a picture or a W+ file) and its weight."""

    path: str
    weight: float = 1.0


def parse_layers(text: str, key: str = "layers") -> str:
    """``text`` checked as a rows spec (all, coarse, middle, fine, A-B, N); the generator's row count is checked at load."""
    text = text.strip()
    if text in LAYER_NAMES:
        return text
    low, dash, high = text.partition("-")
    try:
        a, b = int(low), int(high) if dash else int(low)
    except ValueError:
        raise OptionError(f"parameter {key} expects all, coarse, middle, fine, A-B or N, got {text!r}.") from None
    if a < 0 or b < a:
        raise OptionError(f"parameter {key} expects rows A-B with 0 <= A <= B, got {text!r}.")
    return text


def layer_rows(text: str, n_latent: int, key: str = "layers") -> range:
    """The W+ rows a layers spec names for a generator with ``n_latent`` rows; a range past them is refused."""
    if text == "all":
        return range(n_latent)
    if text in LAYER_NAMES:
        return layer_groups(n_latent)[text]
    low, _, high = text.partition("-")
    a, b = int(low), int(high or low)
    if b >= n_latent:
        raise OptionError(f"parameter {key} names rows {text}, but the generator has rows 0-{n_latent - 1}; "
                          "choose rows inside them.")
    return range(a, b + 1)


def parse_edits(text: str) -> tuple[EditItem, ...]:
    """``smile:2,age:-3@coarse`` → edit items, every name known (or a file that exists)."""
    items = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        head, at, layers = part.rpartition("@") if "@" in part else (part, "", "")
        name, colon, strength = head.rpartition(":") if ":" in head else (head, "", "")
        try:
            value = float(strength) if colon else 1.0
        except ValueError:
            raise OptionError(f"parameter edit expects NAME[:STRENGTH][@LAYERS] items, got {part!r}.") from None
        check_range(f"strength of {name}", value, -100.0, 100.0)
        _check_direction(name, "edit")
        items.append(EditItem(name, value, parse_layers(layers, f"layers of {name}") if at else None))
    return tuple(items)


def parse_conditions(text: str) -> tuple[str, ...]:
    """``gender,age`` → the condition names (or files), each checked."""
    names = tuple(filter(None, (p.strip() for p in text.split(","))))
    for name in names:
        _check_direction(name, "condition")
    return names


def parse_mix(text: str) -> tuple[MixItem, ...]:
    """``ref.jpg:0.7,other.png`` → reference items; every file must exist."""
    items = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        path, colon, weight = part.rpartition(":") if ":" in part else (part, "", "")
        if colon and not _is_number(weight):
            path, colon = part, ""  # a colon inside the path itself
        value = float(weight) if colon else 1.0
        check_range(f"weight of {path}", value, 0.0, 1e6)
        if not Path(path).expanduser().is_file():
            raise InputNotFoundError(f"reference {path} does not exist; give a picture with a face, or a W+ "
                                     "file, in mix=.")
        items.append(MixItem(path, value))
    return tuple(items)


def parse_seconds(text: str, key: str) -> float:
    """``2s``, ``500ms`` or ``2`` → seconds (0 or more)."""
    t = text.strip().lower()
    scale = 1e-3 if t.endswith("ms") else 1.0
    t = t.removesuffix("ms").removesuffix("s")
    try:
        value = float(t) * scale
    except ValueError:
        raise OptionError(f"parameter {key} expects a time like 2s or 500ms, got {text!r}.") from None
    check_range(key, value, 0.0, 3600.0)
    return value


def _check_direction(name: str, key: str) -> None:
    if not name:
        raise OptionError(f"parameter {key} has an empty direction name.")
    if is_path(name):
        if not Path(name).expanduser().is_file():
            raise InputNotFoundError(f"direction file {name} does not exist; check the path given in {key}=.")
    elif named(name) is None and user_file(name) is None:
        raise OptionError(f"unknown direction {name!r} in {key}=; the known ones are: {known_names()} "
                          "(or a direction of your own from `henshin directions fit`, or a direction file's path).")


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


@dataclass(frozen=True)
class LatentParams:
    """edit: NAME[:STRENGTH][@LAYERS],… (age, smile, pose, GANSpace pcN and presets, InterFaceGAN
    gender/eyeglasses, or a direction file); layers: rows for edits without @ (all, coarse, middle,
    fine, A-B); condition: directions the edits are projected off (gender,age); mix: reference
    faces PATH[:WEIGHT],… whose mix_layers rows are taken; ramp: time for edits to reach their
    strength (2s); mode: delta adds G(edited) − G(unedited) to the real face, replace pastes
    G(edited) (auto: delta, or replace with a domain); encode_every: run the encoder every N frames (and when the face changes);
    smooth: W+ smoothing, 0 off, higher steadier; size: generator output side (0: the
    generator's own; smaller stops synthesis early); crop: side of the face crop cut from the
    frame (the encoder sees it at 256); paste: blend inside the face mask or the whole crop
    (auto: the crop with a domain); weights: e4e checkpoint (registry name or path);
    random_weights: seeded random networks (meaningless output, for tests and timing); govern:
    live, offer the engine's latency governor (``henshin live --latency-budget``) lower
    encode_every and size steps; domain: decode with
    an adapted generator (registry name, path, or N for the Nth of domains; 0 or empty: FFHQ);
    domains: generators loaded up front so that switching between them never stalls; swap: take
    the layers up to this resolution from one generator and the rest from the other (0: off);
    swap_coarse: which gives the coarse layers; domain_mix: 0..1, weights interpolated from FFHQ
    (0) to the domain (1); local: FILE:STRENGTH, a channel-local edit from `henshin directions
    channels` (a path or its NAME) raised by STRENGTH × its channels' spread inside its region."""

    edit: str = ""
    layers: str = "all"
    condition: str = ""
    mix: str = ""
    mix_layers: str = "fine"
    ramp: str = "0"
    mode: Literal["auto", "delta", "replace"] = "auto"
    encode_every: int = 1
    smooth: float = 1.0
    size: int = 0
    crop: int = 256
    paste: Literal["auto", "face", "crop"] = "auto"
    weights: str = "e4e-ffhq"
    random_weights: bool = False
    govern: bool = True
    domain: str = ""
    domains: str = ""
    swap: int = 0
    swap_coarse: Literal["domain", "base"] = "domain"
    domain_mix: float = 1.0
    local: str = ""

    def __post_init__(self) -> None:
        parse_layers(self.layers)
        parse_layers(self.mix_layers, "mix_layers")
        edits, conditions = parse_edits(self.edit), parse_conditions(self.condition)
        self_conditioned = sorted({e.direction for e in edits} & set(conditions))
        if self_conditioned:
            raise OptionError(f"edit {self_conditioned[0]} is also a condition; an edit cannot be projected off itself.")
        parse_mix(self.mix)
        parse_seconds(self.ramp, "ramp")
        check_range("encode_every", self.encode_every, 1, MAX_ENCODE_EVERY)
        check_range("smooth", self.smooth, 0.0, 10.0)
        if self.size and (self.size < 16 or self.size & (self.size - 1)):
            raise OptionError(f"parameter size expects 0 (the generator's own) or a power of two from 16, got {self.size}.")
        check_range("crop", self.crop, 256, 1024)
        domains = self.domain_list
        if self.domain_index is not None and self.domain_index > len(domains):
            raise OptionError(f"parameter domain {self.domain} names domain {self.domain_index}, but domains lists "
                              f"{len(domains)}; give 0 (FFHQ) to {len(domains)}, a registry name or a path.")
        for spec in (*domains, *([self.domain] if self.domain and self.domain_index is None else [])):
            if is_path(spec) and not Path(spec).expanduser().is_file():
                raise InputNotFoundError(f"domain generator {spec} does not exist; check the path, or name a "
                                         "registry model (henshin models list).")
        if self.swap and (self.swap < 4 or self.swap & (self.swap - 1)):
            raise OptionError(f"parameter swap expects 0 (off) or a resolution, a power of two from 4, got {self.swap}.")
        check_range("domain_mix", self.domain_mix, 0.0, 1.0)
        local = parse_local(self.local)
        if local is not None:
            check_range("strength of local", local[1], -100.0, 100.0)
            local_file(local[0])
        if self.weights and is_path(self.weights) and not Path(self.weights).expanduser().is_file():
            raise InputNotFoundError(f"weights file {self.weights} does not exist; check the path given with "
                                     "--param weights=, or name a registry model (e4e-ffhq).")

    @cached_property
    def edits(self) -> tuple[EditItem, ...]:
        return parse_edits(self.edit)

    @cached_property
    def conditions(self) -> tuple[str, ...]:
        return parse_conditions(self.condition)

    @cached_property
    def references(self) -> tuple[MixItem, ...]:
        return parse_mix(self.mix)

    @cached_property
    def ramp_s(self) -> float:
        return parse_seconds(self.ramp, "ramp")

    @property
    def weights_is_path(self) -> bool:
        return is_path(self.weights)

    @cached_property
    def domain_list(self) -> tuple[str, ...]:
        """The generators ``domains`` lists (names or paths), in order."""
        return tuple(filter(None, (p.strip() for p in self.domains.split(","))))

    @property
    def domain_index(self) -> int | None:
        """``domain`` as a number (0: FFHQ, N: the Nth of ``domains``), or None for a name or path."""
        text = self.domain.strip()
        return int(text) if text.isdigit() else (0 if not text else None)

    @property
    def active_domain(self) -> str:
        """The generator the faces are decoded with: "" for FFHQ (the encoder's own), else a name or path."""
        index = self.domain_index
        if index is None:
            return self.domain.strip()
        return "" if index == 0 else self.domain_list[index - 1]

    def domains_used(self) -> tuple[str, ...]:
        """Every domain generator to load: ``domains`` and a ``domain`` named outside them."""
        named = [self.active_domain] if self.domain_index is None and self.active_domain else []
        return tuple(dict.fromkeys([*self.domain_list, *named]))

    def directions_used(self) -> tuple[str, ...]:
        """Every direction the edits and conditions name (names and paths)."""
        return (*(e.direction for e in self.edits), *self.conditions)
