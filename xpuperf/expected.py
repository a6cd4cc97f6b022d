"""Expected failures: the items a backend is known to fail, committed beside it.

As IREE's test suites do, a backend keeps a file (``backends/<name>/expected_failures.txt``)
listing pytest item names, one a line, with the reason after a '#':

    test_op[adagrad]  # conversion: no converter for Adagrad
    test_numerics[widedeep-tf-criteo-int8]  # cosine 0.9776 < 0.98

The plugin marks the listed items xfail(strict): a listed item that fails is
expected, a listed item that passes fails the run (its line should go), and an
unlisted item that fails fails as usual. A vendor's CI then gates on change, not
on the known gaps. ``updated`` rewrites a file from a run's outcomes
(--update-expected-failures) so that nobody writes it by hand.

Pure text in, text out, apart from ``load``.
"""
from __future__ import annotations

from os import PathLike
from pathlib import Path
from typing import Mapping

FILE_NAME = "expected_failures.txt"
_REASON_CHARS = 160


class ExpectedFileError(ValueError):
    """The file is malformed; the message names the file and line."""


def parse(text: str, source: str = FILE_NAME) -> dict[str, str]:
    """{item name: reason} of an expected-failures file's text."""
    listed: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        name, _, reason = line.partition("#")
        name = name.strip()
        if not name:
            continue
        if " " in name or not name.endswith("]") or "[" not in name:
            raise ExpectedFileError(
                f"{source}:{number}: {name!r} is not an item name; a line holds one name "
                f"such as test_op[add_bcast], then an optional '# reason'")
        if name in listed:
            raise ExpectedFileError(f"{source}:{number}: {name} is listed twice")
        listed[name] = reason.strip()
    return listed


def load(path: str | PathLike[str]) -> dict[str, str]:
    """The listed items of ``path``; {} when there is no such file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    return parse(text, str(path))


def updated(text: str, outcomes: Mapping[str, str | None], header: str) -> str:
    """``text`` rewritten from a run: ``outcomes`` maps each item that ran to None
    when it did not fail, else to its failure's reason. An item that did not fail
    loses its line, a failed one gains one (or keeps its own, with the new reason),
    and the lines of items that did not run, and comments, stay as they were.
    ``header`` starts a file that had no text."""
    lines = text.splitlines() if text.strip() else [f"# {h}" if h else "#"
                                                     for h in header.splitlines()]
    kept: list[str] = []
    seen: set[str] = set()
    for line in lines:
        name = line.partition("#")[0].strip()
        if name in outcomes:
            seen.add(name)
            if outcomes[name] is None:
                continue
            line = _line(name, outcomes[name] or "")
        kept.append(line)
    added = sorted(name for name, reason in outcomes.items()
                   if reason is not None and name not in seen)
    return "\n".join(kept + [_line(name, outcomes[name] or "") for name in added]) + "\n"


def _line(name: str, reason: str) -> str:
    reason = " ".join(reason.split())[:_REASON_CHARS]
    return f"{name}  # {reason}" if reason else name
