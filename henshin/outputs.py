"""Where henshin writes: one set of rules for every path it creates.

Outputs, ``--stats``, ``--record``, ``henshin sample`` and the model and
compiled-artefact caches all follow them: a path is never an input (through
symlinks, ``..`` and hard links), never an existing file unless the user passed
``--overwrite``, checked before any work starts, and written under a temporary
name in the same folder that is renamed into place only when complete.

Temporary names are recognisable: ``.NAME.<pid>-<token>.partial[.suffix]``. A
run killed too hard to clean up (SIGKILL, power loss) leaves one behind; the
next run that writes the same path removes it once its process is gone. Disk
errors (full, read-only, a vanished folder) become one sentence naming the path
and the fix.

This module sits beside ``henshin.errors`` rather than in the engine because the
model store and the runtimes' cache write files too and may not import the engine.
"""

from __future__ import annotations

import errno
import os
import re
import secrets
import shutil
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

from henshin.errors import OutputError

PARTIAL = ".partial"

_active: set[str] = set()  # this process's temporary names still being written


# -- checks before work ------------------------------------------------------------------


def check_writable(path: Path, *, inputs: Iterable[Path] = (), taken: Sequence[tuple[str, Path]] = (),
                   overwrite: bool = False, folder: bool = False, what: str = "output") -> None:
    """Refuse ``path`` as a place to write, with one sentence, unless every rule holds.

    ``inputs``: what the run reads (the path may neither be nor contain one);
    ``taken``: other paths the same run writes, as (label, path); ``folder``:
    the path is a folder henshin writes files into (it may exist already);
    ``what``: how the message names the path (``output``, ``--stats``).
    """
    path = Path(path)
    real = _real(path)
    inputs = [Path(src) for src in inputs]
    for src in inputs:
        if real == _real(src) or _same_file(path, src):
            raise OutputError(f"{what} {path} is the input {src}; choose a different path.")
    for label, other in taken:
        if other is not None and (real == _real(Path(other)) or _same_file(path, Path(other))):
            raise OutputError(f"{what} {path} is also {label}; give each a different path.")
    if not folder and path.is_dir():
        raise OutputError(f"{what} {path} is a folder; give a file name that does not exist yet.")
    if folder and path.exists() and not path.is_dir():
        raise OutputError(f"{what} {path} is an existing file, but an output without a suffix is a folder of "
                          "images; give a new folder name, or a name ending in .mp4 or .png.")
    for src in inputs:
        if folder and _inside(_real(src), real):
            raise OutputError(f"{what} {path} contains the input {src}; choose a folder outside it.")
    if not folder and path.exists() and not overwrite:
        raise OutputError(f"{what} {path} already exists; pass --overwrite to replace it or choose another name.")
    parent = _parent(path)
    if not parent.is_dir():
        raise OutputError(f"the folder {parent} for {what} {path} does not exist; create it or choose another path.")
    probe(path if folder and path.is_dir() else parent, f"{what} {path}")


def probe(folder: Path, what: str) -> None:
    """Create and remove a file in ``folder``: the only check that sees read-only disks, ACLs and quotas."""
    name = Path(folder) / f".henshin-probe.{os.getpid()}-{secrets.token_hex(3)}{PARTIAL}"
    try:
        fd = os.open(name, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        os.close(fd)
        os.unlink(name)
    except OSError as exc:
        raise write_error(exc, Path(folder), what) from None


def ensure_folder(folder: Path, what: str) -> Path:
    """Create ``folder`` (and its parents) when missing; one sentence when it cannot be."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise OutputError(f"{what} {folder} is a file, not a folder; point it at a folder (or remove the file).")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise write_error(exc, folder, what) from None
    return folder


# -- temporary names ------------------------------------------------------------------------


def partial_path(path: Path, *, folder: bool = False, inside: bool = False) -> Path:
    """Create (empty) and return a new temporary file or folder for ``path``, in the same folder.

    Leftovers of earlier runs killed while writing ``path`` are removed first.
    ``inside``: put the temporary folder inside ``path`` (an existing output folder).
    """
    path = Path(path)
    clean_leftovers(path)
    where = _real(path) if inside else _parent(path)
    suffix = "" if folder else path.suffix
    tmp = where / f".{path.name}.{os.getpid()}-{secrets.token_hex(3)}{PARTIAL}{suffix}"
    try:
        if folder:
            tmp.mkdir()
        else:
            os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        _default_mode(tmp, folder)
    except OSError as exc:
        raise write_error(exc, path) from None
    _active.add(str(tmp))
    return tmp


def leftovers(path: Path) -> list[Path]:
    """Temporary files or folders of ``path`` whose writing process is gone."""
    path = Path(path)
    pattern = re.compile(rf"^\.{re.escape(path.name)}\.(\d+)-[0-9a-f]+{re.escape(PARTIAL)}")
    found = []
    for where in (_parent(path), _real(path)):
        if not where.is_dir():
            continue
        try:
            names = os.listdir(where)
        except OSError:
            continue
        for name in names:
            match = pattern.match(name)
            if match and not _alive(int(match.group(1)), where / name):
                found.append(where / name)
    return found


def clean_leftovers(path: Path) -> list[Path]:
    """Remove what ``leftovers`` finds; returns what was removed."""
    removed = []
    for stale in leftovers(path):
        try:
            if stale.is_dir() and not stale.is_symlink():
                shutil.rmtree(stale)
            else:
                stale.unlink()
            removed.append(stale)
        except OSError:
            pass  # in use (Windows) or not ours to remove: left for a later run
    return removed


def commit(tmp: Path, path: Path, what: str = "") -> None:
    """Flush ``tmp`` to the disk and rename it to ``path``; on failure ``tmp`` is removed."""
    try:
        if not Path(tmp).is_dir():
            _fsync(tmp)
        os.replace(tmp, path)
    except OSError as exc:
        discard(tmp)
        raise write_error(exc, Path(path), what) from None
    _active.discard(str(tmp))


def discard(tmp: Path | None) -> None:
    """Remove a temporary file or folder; never raises."""
    if tmp is None:
        return
    _active.discard(str(tmp))
    try:
        if Path(tmp).is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            Path(tmp).unlink(missing_ok=True)
    except OSError:
        pass


def write_atomic(path: Path, data: bytes, what: str = "") -> None:
    """Write ``data`` to ``path``: a temporary name first, renamed when complete."""
    path = Path(path)
    tmp = partial_path(path)
    try:
        with open(tmp, "wb") as f:
            f.write(data)
    except OSError as exc:
        discard(tmp)
        raise write_error(exc, path, what) from None
    commit(tmp, path, what)


# -- errors ------------------------------------------------------------------------------


def write_error(exc: OSError, path: Path, what: str = "") -> OutputError:
    """A disk error while writing ``path`` as one sentence with the fix."""
    name = what or str(path)
    code = exc.errno
    if code in (errno.ENOSPC, getattr(errno, "EDQUOT", -1)):
        return OutputError(f"the disk holding {name} is full; free some space or write somewhere else.")
    if code == errno.EROFS:
        return OutputError(f"{name} is on a read-only disk; choose a folder on a writable disk.")
    if code in (errno.EACCES, errno.EPERM):
        return OutputError(f"{name} cannot be written (permission denied); choose a folder you can write to.")
    if code == errno.ENOENT:
        return OutputError(f"the folder of {name} no longer exists (removed during the run?); create it and run again.")
    if code == errno.ENOTDIR:
        return OutputError(f"part of the path of {name} is a file, not a folder; choose another path.")
    reason = exc.strerror or type(exc).__name__
    return OutputError(f"{name} could not be written ({reason}); check the disk and the path.")


# -- inside ------------------------------------------------------------------------------


def _real(path: Path) -> Path:
    """The absolute path with symlinks and ``..`` resolved in order (as far as it exists), as the system would."""
    return Path(os.path.realpath(path))


def _parent(path: Path) -> Path:
    """The real folder ``path`` is in (a symlink at ``path`` itself is replaced, not followed)."""
    return _real(Path(path).parent)


def _inside(child: Path, folder: Path) -> bool:
    return child != folder and folder in child.parents


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def _alive(pid: int, tmp: Path) -> bool:
    """Whether process ``pid`` may still be writing ``tmp`` (another run of the same output)."""
    if pid == os.getpid():
        return str(tmp) in _active
    if sys.platform == "win32":
        return False  # an open file cannot be removed there: the unlink fails and the file is kept
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # exists, owned by someone else
    return True


def _read_umask() -> int:
    umask = os.umask(0o022)
    os.umask(umask)
    return umask


_UMASK = _read_umask()  # read once, at import: os.umask is process-wide, not safe to flip while threads run


def _default_mode(path: Path, folder: bool) -> None:
    """Temporary files are created private; give them the mode a plain open()/mkdir() would."""
    os.chmod(path, (0o777 if folder else 0o666) & ~_UMASK)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
