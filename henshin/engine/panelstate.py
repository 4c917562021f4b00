"""What the live panel shows and keeps, without the web server: its address and token, the
control state (STATE), the parameter controls, and named presets.

STATE is the run's controls as plain JSON::

    {"chain": "style", "enabled": true,
     "params": {"style": {"style": 0, "strength": 0.5, ...}, "composite": {"feather": 0.08, ...}},
     "faces": {"1": "tint"}}

``params`` holds each filter in use (in any chain) and the compositor; ``faces`` the faces
routed to a chain of their own, by track number. A preset is a STATE saved under a name in
the user's config folder; loading one turns it back into control lines, so it changes the
run through exactly the path standard input takes.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from henshin.engine.chains import COMPOSITE, FilterGraph
from henshin.engine.composite import CompositeParams
from henshin.errors import BadInputError, InputNotFoundError, OptionError
from henshin.filters.base import BUILTIN, FILTERS, describe_params, filter_class
from henshin.outputs import ensure_folder, write_atomic

DEFAULT_HOST = "127.0.0.1"
TOKEN_ENV = "HENSHIN_PANEL_TOKEN"
PRESET_VERSION = 1
PRESET_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 _.-]{0,63}$")
_TOKEN_CHARS = re.compile(
    r"^[A-Za-z0-9_.~-]{8,128}$"
)  # URL-safe as it is: the printed link works when pasted


@dataclass(frozen=True)
class PanelAddress:
    """Where the panel listens; ``port`` 0 lets the system pick a free one."""

    host: str
    port: int

    @property
    def loopback(self) -> bool:
        """Whether only this machine can reach it."""
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False

    def url(self, port: int | None = None) -> str:
        """``http://HOST:PORT`` (an IPv6 host in brackets)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port if port is None else port}"


def parse_address(text: str) -> PanelAddress:
    """``--panel [HOST:]PORT`` → an address; HOST defaults to 127.0.0.1 (``[::1]:8080`` for IPv6)."""
    host, sep, port = text.rpartition(":")
    if not sep:
        host = DEFAULT_HOST
    host = host.strip()
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if sep and not host:
        raise OptionError(f"--panel expects [HOST:]PORT like 8765 or 127.0.0.1:8765, got {text!r}.")
    try:
        number = int(port)
    except ValueError:
        raise OptionError(
            f"--panel expects [HOST:]PORT like 8765 or 127.0.0.1:8765, got {text!r}."
        ) from None
    if not 0 <= number <= 65535:
        raise OptionError(f"--panel port expects 0 to 65535 (0: any free port), got {number}.")
    return PanelAddress(host, number)


def panel_token() -> str:
    """``$HENSHIN_PANEL_TOKEN`` when set (checked), else a fresh random token for this run."""
    given = os.environ.get(TOKEN_ENV)
    if given is None:
        return secrets.token_urlsafe(18)
    if not _TOKEN_CHARS.match(given):
        raise OptionError(
            f"{TOKEN_ENV} should be 8 to 128 letters, digits or - _ . ~; set another value or unset "
            "it for a random token."
        )
    return given


# -- STATE ------------------------------------------------------------------------------------


def control_state(graph: FilterGraph) -> dict[str, Any]:
    """The graph's controls as STATE (read it on the processing thread, between frames)."""
    params: dict[str, Any] = {}
    for link in graph.links:
        params.setdefault(link.name, dataclasses.asdict(link.filter.params))
    params[COMPOSITE] = dataclasses.asdict(graph.composite)
    return {
        "chain": graph.default.text,
        "enabled": graph.enabled,
        "params": params,
        "faces": {str(track): chain.text for track, chain in sorted(graph.routes.items())},
    }


def controls(names: list[str]) -> dict[str, Any]:
    """The controls for filters ``names`` and the compositor, and every filter's name (for the chain menus)."""
    described = {
        name: describe_params(filter_class(name).Params) for name in names if name != COMPOSITE
    }
    return {
        "params": described | {COMPOSITE: describe_params(CompositeParams)},
        "filters": sorted({*BUILTIN, *FILTERS}),
    }  # names only: importing every family here would stall the run


# -- presets ----------------------------------------------------------------------------------


def preset_folder(config: Path) -> Path:
    """Where named presets are kept: ``presets/`` in the user's config folder."""
    return Path(config) / "presets"


def preset_names(folder: Path) -> list[str]:
    """The saved presets' names, sorted."""
    if not folder.is_dir():
        return []
    return sorted(p.stem for p in folder.glob("*.json") if PRESET_NAME.match(p.stem))


def save_preset(folder: Path, name: str, state: dict[str, Any], overwrite: bool = False) -> Path:
    """Write STATE as preset ``name`` (temporary name, then renamed); an existing one only with ``overwrite``."""
    path = _preset_path(folder, name)
    if path.exists() and not overwrite:
        raise OptionError(
            f"a preset called {name!r} exists already; save with overwrite to replace it, or "
            "choose another name."
        )
    ensure_folder(folder, "the presets folder")
    doc = {
        "henshin_preset": PRESET_VERSION,
        **{k: state[k] for k in ("chain", "enabled", "params", "faces")},
    }
    write_atomic(path, (json.dumps(doc, indent=2) + "\n").encode(), f"preset {path}")
    return path


def load_preset(folder: Path, name: str) -> dict[str, Any]:
    """Preset ``name`` as STATE, checked for shape (its values are checked when applied)."""
    path = _preset_path(folder, name)
    if not path.is_file():
        raise InputNotFoundError(
            f"no preset called {name!r}; saved presets: {', '.join(preset_names(folder)) or 'none'}."
        )
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise BadInputError(
            f"preset file {path} is not valid JSON; save the preset again or remove the file."
        ) from None
    except OSError as exc:
        raise BadInputError(
            f"preset file {path} cannot be read ({exc.strerror}); check its permissions."
        ) from None
    shapes = {"chain": str, "enabled": bool, "params": dict, "faces": dict}
    if not isinstance(doc, dict) or any(not isinstance(doc.get(k), t) for k, t in shapes.items()):
        raise BadInputError(
            f"preset file {path} is not a henshin preset (expected chain, enabled, params and "
            "faces); save the preset again or remove the file."
        )
    return doc


def preset_lines(preset: dict[str, Any], current: dict[str, Any] | None) -> list[str]:
    """Control lines that turn the run into ``preset``: the chain with its parameters, the
    faces' chains (routes the preset lacks go back to the default), the other parameters, on/off.

    A value with white space cannot travel in a control line and is left as it is.
    """
    params: dict[str, dict[str, Any]] = preset["params"]
    chain = str(preset["chain"])
    names = chain.split("+")
    pairs = [
        f"{name}.{key}={_text(value)}"
        for name in names
        for key, value in params.get(name, {}).items()
        if _fits(value)
    ]
    lines = [" ".join(["filter", chain, *pairs])]
    faces = {str(k): str(v) for k, v in preset["faces"].items()}
    lines += [f"face {track} {text}" for track, text in faces.items()]
    lines += [
        f"face {track} default" for track in (current or {}).get("faces", {}) if track not in faces
    ]
    lines += [
        f"set {name}.{key} {_text(value)}"
        for name, values in params.items()
        if name not in names
        for key, value in values.items()
        if _fits(value) and _text(value)
    ]
    lines.append("on" if preset["enabled"] else "off")
    return lines


def _preset_path(folder: Path, name: str) -> Path:
    if not isinstance(name, str) or not PRESET_NAME.match(name):
        raise OptionError(
            "a preset name is 1 to 64 letters, digits, spaces, - _ or ., starting with a letter or "
            f"digit; got {name!r}."
        )
    return Path(folder) / f"{name}.json"


def _text(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def _fits(value: Any) -> bool:
    return not any(ch.isspace() for ch in _text(value))
