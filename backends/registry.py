"""Find a backend by hardware name without importing any SDK.

Two sources, the same contract: a package under backends/ (backends/cpu for
--hardware CPU) exporting ``BACKEND``, or an installed distribution's entry point
in group ``xpuperf.backends`` (name = hardware name, value = the Backend class),
so a vendor can ship its backend in its own wheel.
"""
from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path

from backends.base import Backend
from xpuperf.extras import pip_hint

ENTRY_POINT_GROUP = "xpuperf.backends"
_HERE = Path(__file__).parent
# Where a user who named a backend that does not load here learns to write one.
HELP = ("how to write or install a backend: docs/guide.md, starting from the template "
        "docs/backend_template/")


@dataclass(frozen=True)
class BackendEntry:
    name: str  # the --hardware name, upper case (or the 'module:Class' path)
    target: str  # "backends.cpu" or an entry point value "pkg.mod:Class"

    def load(self) -> type[Backend]:
        """The Backend class; UnknownBackend (naming the module and the guide) when
        its module fails to import, e.g. a vendor SDK it imports at module level,
        or lacks the class named."""
        module, attr = self.target.split(":", 1) if ":" in self.target \
            else (self.target, "BACKEND")
        try:
            found = vars(importlib.import_module(module))
        except ImportError as e:
            raise UnknownBackend(f"--hardware {self.name}: importing {module} failed: "
                                 f"{type(e).__name__}: {e} (a backend imports its SDK inside "
                                 f"its methods, so that it can say what is missing); {HELP}") \
                from None
        if attr not in found:
            classes = [n for n, v in found.items() if isinstance(v, type) and
                       issubclass(v, Backend) and v is not Backend]
            raise UnknownBackend(f"--hardware {self.target!r}: module {module!r} has no "
                                 f"{attr!r}; its backend classes: {', '.join(classes) or 'none'} "
                                 f"(give --hardware MODULE:CLASS); {HELP}")
        return found[attr]

    def missing(self) -> str:
        """Why this backend cannot run here, or '' if its SDK modules are present.

        Reads ``requires`` from the class, which imports the backend's own module
        but none of its SDK (backends import their SDK inside methods).
        """
        cls = self.load()
        absent = [m for m in cls.requires if importlib.util.find_spec(m) is None]
        if not absent:
            return ""
        install = cls.install_hint or pip_hint(absent)
        hint = f"; {install}" if install else ""
        return f"missing Python module(s) {', '.join(absent)}{hint}"


def available() -> dict[str, BackendEntry]:
    """Every backend this installation knows, by upper-case hardware name."""
    found = {p.name.upper(): BackendEntry(p.name.upper(), f"backends.{p.name}")
             for p in sorted(_HERE.iterdir())
             if (p / "__init__.py").is_file() and not p.name.startswith("_")}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        found.setdefault(ep.name.upper(), BackendEntry(ep.name.upper(), ep.value))
    return found


class UnknownBackend(LookupError):
    pass


def find(name: str) -> BackendEntry:
    """By hardware name, or a 'package.module:Class' path for a backend under
    development that is neither in backends/ nor installed."""
    if ":" in name:
        module = name.split(":", 1)[0]
        try:
            spec = importlib.util.find_spec(module)
        except (ImportError, ValueError):  # a missing parent package, an empty name
            spec = None
        if spec is None:
            raise UnknownBackend(f"--hardware {name!r}: module {module!r} not found (give "
                                 "--hardware MODULE:CLASS, the module importable from here or "
                                 f"on PYTHONPATH); {HELP}")
        return BackendEntry(name, name)
    entries = available()
    entry = entries.get(name.upper())
    if entry is None:
        raise UnknownBackend(f"unknown --hardware {name!r}; available backends: "
                             f"{', '.join(entries) or 'none'} (a package under backends/ or an "
                             f"entry point in group {ENTRY_POINT_GROUP!r}); {HELP}")
    return entry
