"""The model registry: which released checkpoints exist, where they come from, what they serve.

The registry is data (``models.toml``, shipped with the package): one entry per
model with its files' official URLs, sizes, SHA-256 where known, licence and the
filter it serves. A name registered twice is refused.
"""

from __future__ import annotations

import difflib
import re
import tomllib
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from henshin.errors import ModelError, OptionError
from henshin.home import cache_root

_NAME = re.compile(r"^[a-z0-9][a-z0-9-]*$")
USER_REGISTRY = "user-models.toml"  # models stored under names of the user's choosing (models import --generator)


@dataclass(frozen=True)
class ModelFile:
    """One file of a model: where it comes from and what it must hash to (empty: unknown)."""

    name: str
    url: str = ""
    size: int = 0
    sha256: str = ""
    archive_member: str = ""
    package: str = ""
    package_version: str = ""

    @property
    def archive_name(self) -> str:
        """The archive's file name in ``models/.downloads`` (from the URL's path)."""
        return Path(urllib.parse.urlparse(self.url).path).name or "archive.zip"


@dataclass(frozen=True)
class ModelEntry:
    """A known model: its files, licence, source and the filter it serves."""

    name: str
    title: str
    family: str
    filter: str
    licence: str
    source: str
    files: tuple[ModelFile, ...]
    page: str = ""
    check: tuple[str, ...] = ()
    keep: tuple[str, ...] = ()
    loader: str = ""
    note: str = ""
    # Bytes to download where the released file's size is known but not checked (other builds of the
    # same network may be imported under this name): shown by `henshin models list`, 0 where unknown.
    download_size: int = 0

    @property
    def bundled(self) -> bool:
        """True when every file ships inside an installed package (nothing to download)."""
        return all(f.package for f in self.files)

    @property
    def size(self) -> int:
        """Total size in bytes, 0 when any file's size is unknown."""
        return sum(f.size for f in self.files) if all(f.size for f in self.files) else 0

    @property
    def download(self) -> int:
        """Bytes a pull downloads: the checked size, else the released size where known; 0 when unknown."""
        return self.size or self.download_size


@dataclass
class Registry:
    """The known models by name; built from ``models.toml`` (or any TOML in that layout)."""

    entries: dict[str, ModelEntry] = field(default_factory=dict)

    @classmethod
    def from_toml(cls, text: str, origin: str = "models.toml") -> Registry:
        """Parse registry TOML; a malformed entry raises ModelError naming it."""
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ModelError(f"{origin} is not valid TOML ({exc}).") from None
        return cls({name: _entry(name, table, origin) for name, table in data.items()})

    def get(self, name: str) -> ModelEntry:
        """The entry called ``name``; an unknown name raises OptionError with the closest one."""
        if name in self.entries:
            return self.entries[name]
        close = difflib.get_close_matches(name, list(self.entries), n=1)
        hint = f"did you mean {close[0]}? " if close else ""
        raise OptionError(f"unknown model {name!r}; {hint}see `henshin models list` for the known models.")

    def __iter__(self) -> Iterator[ModelEntry]:
        return iter(self.entries.values())


def _entry(name: str, table: dict[str, Any], origin: str) -> ModelEntry:
    try:
        files = tuple(ModelFile(**f) for f in table.pop("files"))
        entry = ModelEntry(name=name, files=files, check=tuple(table.pop("check", ())),
                           keep=tuple(table.pop("keep", ())), **table)
    except (KeyError, TypeError) as exc:
        raise ModelError(f"model {name!r} in {origin} is malformed ({exc}).") from None
    bad = [f.name for f in files if "/" in f.name or "\\" in f.name or f.name.startswith(".")
           or not (f.url or f.package)]
    if not _NAME.match(name) or not files or bad:
        raise ModelError(f"model {name!r} in {origin} is malformed: expected a lower-case name and files "
                         f"with a plain file name and a url or package{', got ' + ', '.join(bad) if bad else ''}.")
    return entry


@cache
def _packaged_registry() -> Registry:
    text = (resources.files("henshin.models") / "models.toml").read_text(encoding="utf-8")
    return Registry.from_toml(text)


def default_registry() -> Registry:
    """The registry shipped with henshin, plus the models imported under names of the user's choosing."""
    packaged = _packaged_registry()
    path = user_registry_path()
    if not path.is_file():
        return packaged
    user = Registry.from_toml(path.read_text(encoding="utf-8"), str(path))
    return Registry({**user.entries, **packaged.entries})  # a shipped name always wins


def user_registry_path() -> Path:
    """The TOML file (in the registry's layout) of the models imported under the user's own names."""
    return cache_root() / "models" / USER_REGISTRY


def packaged_names() -> set[str]:
    """The names of the models shipped with henshin."""
    return set(_packaged_registry().entries)


def valid_name(name: str) -> bool:
    """Whether ``name`` can name a model: lower-case letters, digits and dashes."""
    return bool(_NAME.match(name))
