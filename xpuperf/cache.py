"""A content-addressed on-disk cache (exported artifacts, reference outputs,
compiled models).

Entries are directories named by a content hash and published with an atomic
rename, so pytest-xdist workers share them safely: a worker that loses the race
discards its copy and uses the winner's.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import pkgutil
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable

import numpy as np

from backends.base import write_atomically


def content_key(*parts: Any) -> str:
    """A stable hash of JSON-able parts (dicts are key-sorted)."""
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:32]


def file_digest(path: Path) -> str:
    """sha256 of a file, or of every file under a folder (names included)."""
    h = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
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
    def __init__(self, root: Path):
        # Absolute, so paths handed out stay valid whatever a backend does to cwd.
        self.root = Path(root).resolve()

    def entry(self, kind: str, key: str, build: Callable[[Path], None]) -> Path:
        """The folder for (kind, key), filled by ``build(folder)`` the first time."""
        final = self.root / kind / key
        if final.is_dir():
            return final
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=final.parent))
        try:
            build(tmp)
            os.rename(tmp, final)
        except OSError:
            if not final.is_dir():  # not a lost race: a real I/O error
                raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return final

    def arrays(self, kind: str, key: str,
               compute: Callable[[], dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
        """Named arrays computed once and kept as .npz (read back without pickle)."""
        folder = self.entry(kind, key, lambda d: np.savez(d / "arrays.npz", **compute()))
        with np.load(folder / "arrays.npz", allow_pickle=False) as z:
            return {name: z[name] for name in z.files}
