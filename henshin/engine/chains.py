"""Filter chains, per-person routing, and the live control that changes them.

A chain is filters applied one after the other to a face: ``warp+style`` warps
the face by its landmarks first, then styles the warped face's crop. Landmark
links always run first (they edit the frame), then crop links in the order
given; a whole-frame link stands alone with the landmark links. Each face goes
to one chain: the default one (``--filter``) or the one its track is routed to
(``--face N=CHAIN``; tracks are numbered in order of appearance from 0). Equal
chains are one chain, so their faces are batched together.

Parameters: ``--param key=value`` goes to the one link that has ``key`` (or to
the compositor: feather, erode, color_match, region); ``--param link.key=value``
names the link (``style.strength=0.5``); ``composite.key`` names the compositor.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from henshin.engine.composite import CompositeParams
from henshin.errors import OptionError
from henshin.filters.base import Filter, available_filters, filter_class, param_names, parse_params

COMPOSITE = "composite"
ModelResolver = Callable[[str], Path]

_uids = itertools.count()


@dataclass(eq=False)
class Link:
    """One filter in a chain; ``uid`` tells its per-face states apart from any other link's."""

    name: str
    filter: Filter
    uid: int = field(default_factory=lambda: next(_uids))

    @property
    def kind(self) -> str:
        """``landmarks``, ``crops`` or ``frame``: what the link consumes."""
        return self.filter.spec.consumes


@dataclass(eq=False)
class Chain:
    """Links applied in order: landmark links, then crop links (or one set of frame links)."""

    text: str
    links: list[Link]

    @property
    def landmark_links(self) -> list[Link]:
        return [link for link in self.links if link.kind == "landmarks"]

    @property
    def crop_links(self) -> list[Link]:
        return [link for link in self.links if link.kind == "crops"]

    @property
    def frame_links(self) -> list[Link]:
        return [link for link in self.links if link.kind == "frame"]

    @property
    def scope(self) -> str:
        """``frame`` when a link takes the whole frame, else ``face``."""
        return "frame" if self.frame_links else "face"

    def link(self, name: str) -> Link:
        """The link called ``name``; an OptionError naming the chain's links otherwise."""
        for link in self.links:
            if link.name == name:
                return link
        raise OptionError(f"the chain {self.text} has no filter {name!r}; its filters are: "
                          f"{', '.join(link.name for link in self.links)}.")


def chain_names(text: str) -> list[str]:
    """``"warp+style"`` → ``["warp", "style"]``, each name checked, none twice."""
    names = [part.strip() for part in text.split("+")]
    if not all(names):
        raise OptionError(f"--filter expects NAME or NAME+NAME (like warp+style), got {text!r}.")
    for name in names:
        filter_class(name)  # an unknown name lists the known ones
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise OptionError(f"the chain {text} names {twice[0]} twice; a chain uses each filter once.")
    return names


@dataclass
class ChainRequest:
    """What the command line asks for, as plain data: the default chain, routes and parameters."""

    default: str = "style"
    faces: dict[int, str] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)


def split_params(chains: Iterable[list[str]], raw: Mapping[str, str]) -> tuple[dict[str, dict[str, str]], dict[str, str]]:
    """Route ``--param`` pairs to filters (by name) and to the compositor; unknown keys are refused."""
    names = list(dict.fromkeys(n for chain in chains for n in chain))
    keys = {name: set(param_names(filter_class(name).Params)) for name in names}
    composite_keys = set(param_names(CompositeParams))
    per_filter: dict[str, dict[str, str]] = {name: {} for name in names}
    composite: dict[str, str] = {}
    for key, value in raw.items():
        target, dot, leaf = key.partition(".")
        if dot:
            if target == COMPOSITE:
                _check_key(leaf, composite_keys, COMPOSITE)
                composite[leaf] = value
            elif target in keys:
                _check_key(leaf, keys[target], target)
                per_filter[target][leaf] = value
            else:
                raise OptionError(f"parameter {key!r} names {target!r}, which is not in the chain; "
                                  f"expected one of: {', '.join([*names, COMPOSITE])}.")
            continue
        owners = [name for name in names if key in keys[name]]
        if len(owners) > 1:
            raise OptionError(f"parameter {key!r} belongs to {' and '.join(owners)}; write "
                              f"{' or '.join(f'{o}.{key}' for o in owners)}.")
        if owners:
            per_filter[owners[0]][key] = value
        elif key in composite_keys:
            composite[key] = value
        else:
            known = sorted(set().union(*keys.values(), composite_keys))
            where = f"filter {names[0]}" if len(names) == 1 else f"filters {', '.join(names)}"
            raise OptionError(f"unknown parameter {key!r} for {where}; expected one of: {', '.join(known)}.")
    return per_filter, composite


def _check_key(key: str, known: set[str], owner: str) -> None:
    if key not in known:
        raise OptionError(f"unknown parameter {key!r} for {owner}; expected one of: {', '.join(sorted(known))}.")


def build_filter(name: str, params: Any, runtime: Any, resolve: ModelResolver | None) -> Filter:
    """A filter with its model files found (``resolve`` maps a registry name to its file)."""
    cls = filter_class(name)
    needed = cls.required_models(params)
    if needed and resolve is None:
        from henshin.models.store import model_path

        resolve = model_path
    weights = {model: resolve(model) for model in needed}
    return cls(params, runtime, weights)


class FilterGraph:
    """The chains of a run, which face goes to which, the compositor's parameters, and their changes.

    Everything live control changes goes through here, between frames. Links
    that are replaced are kept in ``retired`` until the stages have ended their
    per-face states and closed them.
    """

    def __init__(self, request: ChainRequest, runtime: Any = None, resolve: ModelResolver | None = None) -> None:
        self.runtime, self._resolve = runtime, resolve
        self.enabled = True
        self.retired: list[Link] = []
        texts = [request.default, *request.faces.values()]
        parsed = {text: chain_names(text) for text in texts}
        per_filter, composite = split_params(parsed.values(), request.params)
        self.composite = parse_params(CompositeParams, composite)
        self._params = per_filter  # raw strings per filter name: what new links start from
        # Every filter is built (and its parameters checked) before any work starts.
        chains = {text: self._build(text, names) for text, names in parsed.items()}
        self.default = chains[request.default]
        self.routes = {track: chains[text] for track, text in request.faces.items()}
        self._check_scopes()

    # -- what the stages ask -----------------------------------------------------------------

    def chain_for(self, track_id: int) -> Chain:
        """The chain a face of this track goes to."""
        return self.routes.get(track_id, self.default)

    @property
    def chains(self) -> list[Chain]:
        """Every distinct chain in use."""
        return list({id(c): c for c in [self.default, *self.routes.values()]}.values())

    @property
    def links(self) -> list[Link]:
        """Every link in use."""
        return [link for chain in self.chains for link in chain.links]

    @property
    def scope(self) -> str:
        """``frame`` when the run filters whole frames, ``face`` when it filters faces."""
        return self.default.scope

    @property
    def needs_faces(self) -> bool:
        """Whether any chain needs tracked faces."""
        return any(link.kind != "frame" for link in self.links)

    def close(self) -> None:
        """Close every filter, in use or retired."""
        for link in [*self.links, *self.retired]:
            link.filter.close()
        self.retired = []

    @property
    def label(self) -> str:
        """What the default chain does now (``style 5 oil-paint``; links joined by ``+``), or ``off``."""
        return " + ".join(link.filter.label for link in self.default.links) if self.enabled else "off"

    # -- changes (live control) -----------------------------------------------------------

    def set_param(self, key: str, value: str) -> None:
        """``style.strength`` / ``strength`` / ``feather``: change one parameter, validated."""
        target, dot, leaf = key.partition(".")
        if dot and target == COMPOSITE:
            self._set_composite(leaf, value)
            return
        links = [link for link in self.links if (link.name == target if dot else True)
                 and (leaf if dot else key) in param_names(type(link.filter.params))]
        if links:
            for link in links:
                link.filter.set_params(**{leaf if dot else key: value})
                self._params.setdefault(link.name, {})[leaf if dot else key] = value
            return
        if not dot and key in param_names(CompositeParams):
            self._set_composite(key, value)
            return
        names = ", ".join(dict.fromkeys(link.name for link in self.links))
        raise OptionError(f"unknown parameter {key!r} for {names}.")

    def current(self, key: str) -> Any:
        """The current value of a parameter addressed as in ``set_param``."""
        target, dot, leaf = key.partition(".")
        if dot and target == COMPOSITE:
            return getattr(self.composite, leaf, None)
        for link in self.links:
            if (not dot or link.name == target) and hasattr(link.filter.params, leaf if dot else key):
                return getattr(link.filter.params, leaf if dot else key)
        return getattr(self.composite, key, None) if not dot else None

    def switch(self, text: str, params: Mapping[str, str] = {}) -> None:  # noqa: B006 - read only
        """Replace the default chain (faces routed elsewhere keep theirs)."""
        names = chain_names(text)
        per_filter, composite = split_params([names], params)
        new = self._build(text, names, per_filter)
        old = self.default
        self.default = new
        try:
            self._check_scopes()
        except OptionError:
            self.default = old
            for link in new.links:
                link.filter.close()
            raise
        self._retire(old)
        for key, value in composite.items():
            self._set_composite(key, value)

    def route(self, track: int, text: str) -> None:
        """Send faces of ``track`` to chain ``text`` (``default``: back to the default chain)."""
        if track < 0:
            raise OptionError(f"a face number is 0 or more, got {track}.")
        old = self.routes.pop(track, None)
        if text != "default":
            existing = next((c for c in self.chains if c.text == text), None)
            chain = existing or self._build(text, chain_names(text))
            if chain.scope == "frame":
                if existing is None:
                    for link in chain.links:
                        link.filter.close()
                raise OptionError(f"{text} filters whole frames; only face filters can be routed to one face.")
            self.routes[track] = chain
        if old is not None and all(old is not c for c in self.chains):
            self._retire(old)

    # -- inside ----------------------------------------------------------------------------

    def _build(self, text: str, names: list[str], per_filter: Mapping[str, Mapping[str, str]] | None = None) -> Chain:
        links = []
        try:
            for name in names:
                raw = (per_filter or self._params).get(name, {})
                params = parse_params(filter_class(name).Params, raw)
                links.append(Link(name, build_filter(name, params, self.runtime, self._resolve)))
        except BaseException:
            for link in links:
                link.filter.close()
            raise
        chain = Chain(text, sorted(links, key=lambda link: link.kind != "landmarks"))
        if chain.frame_links and chain.crop_links:
            frame = ", ".join(link.name for link in chain.frame_links)
            raise OptionError(f"the chain {text} mixes whole-frame filters ({frame}) with face filters; "
                              "use scope=face for every filter in it, or a chain of one whole-frame filter.")
        return chain

    def _check_scopes(self) -> None:
        for track, chain in self.routes.items():
            if chain.scope == "frame":
                raise OptionError(f"--face {track}={chain.text}: whole-frame filters cannot be routed to one face.")
        if self.routes and self.default.scope == "frame":
            raise OptionError(f"the default chain {self.default.text} filters whole frames; with --face routes "
                              "it must be a face filter (scope=face).")

    def _retire(self, chain: Chain) -> None:
        if all(chain is not c for c in self.chains):
            self.retired.extend(chain.links)

    def _set_composite(self, key: str, value: str) -> None:
        changed = parse_params(CompositeParams, {key: value})
        self.composite = dataclasses.replace(self.composite, **{key: getattr(changed, key)})


def apply_command(graph: FilterGraph, line: str) -> str:
    """Apply one control line to a filter graph; returns the command's verb.

    ``set KEY VALUE`` · ``step KEY DELTA`` · ``filter CHAIN [KEY=VALUE ...]`` ·
    ``face N CHAIN|default`` · ``next-filter`` · ``toggle`` · ``on`` · ``off`` · ``quit``.
    KEY is ``key``, ``link.key`` or ``composite.key``.
    """
    verb, *args = line.split()
    if verb in ("quit", "exit"):
        return "quit"
    if verb == "toggle" and not args:
        graph.enabled = not graph.enabled
    elif verb in ("on", "off") and not args:
        graph.enabled = verb == "on"
    elif verb == "set" and len(args) == 2:
        graph.set_param(args[0], args[1])
    elif verb == "step" and len(args) == 2:
        graph.set_param(args[0], _stepped(graph, args[0], args[1]))
    elif verb == "filter" and args:
        pairs = [a.partition("=") for a in args[1:]]
        if any(not sep or not k for k, sep, _ in pairs):
            raise OptionError(f"filter expects NAME [KEY=VALUE ...], got {line!r}.")
        graph.switch(args[0], {k: v for k, _, v in pairs})
    elif verb == "face" and len(args) == 2:
        graph.route(_whole(args[0], "face"), args[1])
    elif verb == "next-filter" and not args:
        names = sorted(available_filters())
        current = graph.default.links[-1].name
        graph.switch(names[(names.index(current) + 1) % len(names)] if current in names else names[0])
    else:
        raise OptionError(f"unknown control command {line!r}; expected set KEY VALUE, step KEY DELTA, "
                          "filter CHAIN, face N CHAIN, toggle or quit.")
    return verb


def _stepped(graph: FilterGraph, key: str, delta: str) -> str:
    current = graph.current(key)
    if not isinstance(current, int | float) or isinstance(current, bool):
        raise OptionError(f"step needs a numeric parameter, got {key!r}.")
    try:
        step = float(delta)
    except ValueError:
        raise OptionError(f"step expects a number after the parameter, got {delta!r}.") from None
    if step != step or step in (float("inf"), float("-inf")):
        raise OptionError(f"step expects a finite number, got {delta!r}.")
    value = current + type(current)(step)
    return f"{round(value, 6)}"


def _whole(text: str, what: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise OptionError(f"{what} expects a whole number, got {text!r}.") from None
