"""A content-addressed on-disk cache (exported artifacts, reference outputs,
compiled models).

Entries are directories named by a content hash and published with an atomic
rename, so pytest-xdist workers share them safely: a worker that loses the race
discards its copy and uses the winner's. Each records the digest of its
contents, checked on read: a damaged entry is rebuilt, never used.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import pkgutil
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np

from backends.base import write_atomically

# In every entry: the digest of the entry's other files, written last.
DIGEST_FILE = ".xpuperf-digest"


def content_key(*parts: Any) -> str:
    """A stable hash of JSON-able parts (dicts are key-sorted)."""
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:32]


def file_digest(path: Path) -> str:
    """sha256 of a file, or of every file under a folder (names included; a
    cache entry's own DIGEST_FILE left out)."""
    if not (path.is_file() or path.is_dir()):  # /dev/zero or a pipe would be read forever
        raise ValueError(f"{path} is not a regular file or a folder: it cannot be hashed")
    h = hashlib.sha256()
    files = (sorted(p for p in path.rglob("*") if p.is_file() and p.name != DIGEST_FILE)
             if path.is_dir() else [path])
    for f in files:
        h.update(str(f.relative_to(path) if path.is_dir() else f.name).encode())
        with f.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()[:32]


def source_digest(*modules: str) -> str:
    """sha256 of the named modules' source files, found without importing them:
    a cache entry made by code that has changed since is not reused."""
    h = hashlib.sha256()
    for name in sorted(set(modules)):
        try:
            origin = getattr(importlib.util.find_spec(name), "origin", None)
        except (ImportError, ValueError):  # e.g. __main__, or a module made at run time
            origin = None
        digest = file_digest(Path(origin)) if origin and os.path.isfile(origin) else "-"
        h.update(f"{name}:{digest}".encode())
    return h.hexdigest()[:32]


def package_modules(module: str) -> list[str]:
    """``module``, its package and the package's other modules: a backend's code
    is its whole package (the helpers its class calls), not only the file that
    defines the class. Finding them imports the package (not the modules)."""
    spec = importlib.util.find_spec(module)
    package = module if spec and spec.submodule_search_locations else module.rpartition(".")[0]
    if not package:
        return [module]
    locations = importlib.util.find_spec(package).submodule_search_locations or []
    return [module, package, *(f"{package}.{m.name}" for m in pkgutil.iter_modules(locations))]


def arrays_key(arrays: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(f"{name}:{a.dtype}:{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()[:32]


def write_json(path: Path, value: Any) -> None:
    """Write ``value`` as JSON, atomically: a reader sees the old file or the new."""
    text = json.dumps(value, sort_keys=True)
    write_atomically(path, lambda p: p.write_text(text))


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object written by write_json; {} when absent or unreadable."""
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


class Cache:
    """Entries are folders ``<root>/<kind>/<key>``, each holding DIGEST_FILE: the
    digest of the rest of its contents, written before the folder is published.
    A read checks it once per process; an entry that does not match (truncated,
    flipped, half-written by a killed writer) is a miss: it is removed and built
    again, with a warning that names it, so that damage is never blamed on the
    code that reads the entry."""

    def __init__(self, root: Path):
        # Absolute, so paths handed out stay valid whatever a backend does to cwd.
        self.root = Path(root).resolve()
        self._checked: set[Path] = set()
        self._clean_leftovers()

    def entry(self, kind: str, key: str, build: Callable[[Path], None]) -> Path:
        """The folder for (kind, key), filled by ``build(folder)`` the first time."""
        final = self.root / kind / key
        if final in self._checked or (final.is_dir() and self._intact(final)):
            self._checked.add(final)
            return final
        final.parent.mkdir(parents=True, exist_ok=True)
        # The writer's pid in the name: a later session removes the folders of
        # writers that died (killed during a fill) and leaves live ones alone.
        tmp = Path(tempfile.mkdtemp(prefix=f".{key}-{os.getpid()}-", dir=final.parent))
        try:
            build(tmp)
            (tmp / DIGEST_FILE).write_text(file_digest(tmp))
            os.rename(tmp, final)
        except OSError:
            if not final.is_dir():  # not a lost race: a real I/O error
                raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        self._checked.add(final)
        return final

    def holds_files(self, folder: Path) -> bool:
        """Whether an entry holds anything beside its digest."""
        return any(p.name != DIGEST_FILE for p in folder.iterdir())

    def arrays(self, kind: str, key: str,
               compute: Callable[[], dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
        """Named arrays computed once and kept as .npz (read back without pickle)."""
        folder = self.entry(kind, key, lambda d: np.savez(d / "arrays.npz", **compute()))
        with np.load(folder / "arrays.npz", allow_pickle=False) as z:
            return {name: z[name] for name in z.files}

    def _intact(self, folder: Path) -> bool:
        """True if ``folder`` matches its digest; else it is moved out of the way
        (an atomic rename, so a concurrent reader never sees it half removed),
        removed, and a warning names it."""
        try:
            recorded = (folder / DIGEST_FILE).read_text().strip()
            actual = file_digest(folder)
        except OSError:
            recorded, actual = "", "unreadable"
        if recorded == actual:
            return True
        why = "it has no digest" if not recorded else "its contents do not match its digest"
        warnings.warn(f"cache entry {folder} is damaged ({why}: truncated, altered or "
                      "half-written); it is removed and built again", CacheWarning, stacklevel=3)
        doomed = folder.with_name(f".{folder.name}-{os.getpid()}-damaged")
        try:
            os.rename(folder, doomed)
        except OSError:  # another process moved it first
            return False
        shutil.rmtree(doomed, ignore_errors=True)
        return False

    def _clean_leftovers(self) -> None:
        """Remove the temporary folders of writers that are no longer running."""
        for tmp in self.root.glob("*/.*-*-*"):
            pid = tmp.name.rsplit("-", 2)[-2]
            if tmp.is_dir() and pid.isdigit() and not _running(int(pid)):
                shutil.rmtree(tmp, ignore_errors=True)


class CacheWarning(UserWarning):
    """A damaged cache entry was found and is being rebuilt."""


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True
