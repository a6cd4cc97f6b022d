"""No import cycle among xpuperf's and the backends' modules.

Every module's source is parsed (never imported) and each import of an
xpuperf.* or backends.* module becomes an edge, wherever it stands: at the top
or inside a function (a deferred import is still a dependency; deferring one
only hides a cycle), under ``if TYPE_CHECKING:`` too (an annotation's import is
a dependency a checker follows: a cycle through one hides one module's types
behind another's). A cycle is reported by its modules in order.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("xpuperf", "backends")


def modules(root: Path) -> dict[str, Path]:
    """Dotted name -> file, for every module of PACKAGES under ``root``."""
    found = {}
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _resolve(name: str, known: dict[str, Path]) -> str | None:
    """The longest prefix of ``name`` that is one of ``known``'s modules."""
    parts = name.split(".")
    while parts:
        candidate = ".".join(parts)
        if candidate in known:
            return candidate
        parts.pop()
    return None


def imports(module: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The modules of ``known`` that ``module`` imports, anywhere in its source."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)]
                origin = ".".join(base + ([node.module] if node.module else []))
            else:
                origin = node.module or ""
            # "from pkg import sub" imports pkg.sub when sub is a module, pkg otherwise.
            names = [f"{origin}.{a.name}" if f"{origin}.{a.name}" in known else origin
                     for a in node.names]
        else:
            continue
        out.update(r for r in (_resolve(n, known) for n in names) if r and r != module)
    return out


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as its modules in import order (the first repeated
    at the end), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                return path[path.index(target):] + [target]
            if target not in state:
                found = visit(target)
                if found:
                    return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def import_graph(root: Path) -> dict[str, set[str]]:
    known = modules(root)
    return {m: imports(m, p, known) for m, p in known.items()}


def test_no_import_cycle():
    cycle = find_cycle(import_graph(ROOT))
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


@pytest.mark.parametrize("source, expected", [
    # top-level, relative, from-package-import-module and function-local imports
    ({"xpuperf/a.py": "from xpuperf import b\n",
      "xpuperf/b.py": "def f():\n    from .c import x\n",
      "xpuperf/c.py": "import xpuperf.a\n"},
     ["xpuperf.a", "xpuperf.b", "xpuperf.c", "xpuperf.a"]),
    ({"backends/p/__init__.py": "from . import q\n",
      "backends/p/q.py": "from .. import r\n",
      "backends/r.py": "from backends.p import thing\n"},
     ["backends.p", "backends.p.q", "backends.r", "backends.p"]),
    ({"xpuperf/a.py": "import numpy\nfrom xpuperf.b import y\n",
      "xpuperf/b.py": "import os\n"}, None),
    # an annotation-only import closes a cycle too
    ({"xpuperf/a.py": "from xpuperf.b import y\n",
      "xpuperf/b.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                      "    from xpuperf.a import z\n"},
     ["xpuperf.a", "xpuperf.b", "xpuperf.a"]),
], ids=["absolute-relative-deferred", "package-and-parent-relative", "no-cycle",
        "annotation-only"])
def test_finds_cycles_of_every_import_form(tmp_path, source, expected):
    for name, text in source.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    for package in PACKAGES:
        (tmp_path / package).mkdir(exist_ok=True)
    assert find_cycle(import_graph(tmp_path)) == expected
