"""Expected failures: the items a backend is known to fail, committed beside it.

As IREE's test suites do, a backend keeps a file (``backends/<name>/expected_failures.txt``)
listing pytest item names, one a line, with the reason after a '#':

    test_op[adagrad]  # conversion: no converter for Adagrad
    test_numerics[widedeep-tf-criteo-int8]  # cosine 0.9776 < 0.98

Where an outcome depends on what the host offers, the line says so with a
condition on the backend's capabilities (``Backend.capabilities()``: names such
as bf16 or vnni), as IREE keys expectations per target configuration; the line
counts only on a host where the condition holds:

    test_op[attention_4d_causal_padded_kv_bf16]  if not bf16  # mismatch: no native bf16
    test_op[attention_4d_causal_padded_kv_bf16_expanded]  if bf16  # NaN where bf16 is native

The plugin marks the listed items that apply xfail(strict): a listed item that
fails is expected, a listed item that passes fails the run (its line should go),
and an unlisted item that fails fails as usual. A vendor's CI then gates on
change, not on the known gaps, and the same file gives the same verdict on every
host. A fault no capability predicts (a vendor kernel that crashes on some hosts
of one profile and not on others) is listed with ``sometimes``: its item may
fail or pass, and either is reported with the reason, as an unsteady speed is
reported inconclusive rather than guessed:

    test_op[instancenorm_epsilon]  sometimes if capped  # run: MVN crashes on some hosts

``updated`` rewrites a file from a run's outcomes (--update-expected-failures) so
that nobody writes it by hand.

Pure text in, text out, apart from ``load``.
"""
from __future__ import annotations

from os import PathLike
from pathlib import Path
from typing import Iterator, Mapping, NamedTuple

FILE_NAME = "expected_failures.txt"
_REASON_CHARS = 160
NO_CAPABILITIES: Mapping[str, bool] = {}


class ExpectedFileError(ValueError):
    """The file is malformed; the message names the file and line."""


class Listed(NamedTuple):
    """A listed item's expectation on this host."""
    reason: str
    strict: bool = True  # False for 'sometimes': passing does not fail the run


class _Line(NamedTuple):
    name: str
    condition: str  # "" or the text after "if": "not bf16", "vnni and not amx"
    reason: str
    sometimes: bool


def _split(line: str) -> _Line:
    listed, _, reason = line.partition("#")
    name, _, condition = f" {listed.strip()} ".partition(" if ")
    name, sometimes = name.strip(), False
    if name.endswith(" sometimes"):
        name, sometimes = name[:-len(" sometimes")].strip(), True
    return _Line(name, " ".join(condition.split()), reason.strip(), sometimes)


def _holds(condition: str, capabilities: Mapping[str, bool], where: str) -> bool:
    """Whether ``condition`` ("[not] NAME [and [not] NAME]...") holds."""
    if not condition:
        return True
    holds = True
    for term in condition.split(" and "):
        words = term.split()
        negated = words[:1] == ["not"]
        name = " ".join(words[negated:])
        if name not in capabilities:
            known = ", ".join(capabilities) or "none (Backend.capabilities() is empty)"
            raise ExpectedFileError(f"{where}: 'if {condition}': {name!r} is not a capability "
                                    f"of this backend; it knows: {known}")
        holds = holds and capabilities[name] != negated
    return holds


def _lines(text: str, source: str) -> Iterator[tuple[int, _Line]]:
    for number, raw in enumerate(text.splitlines(), 1):
        line = _split(raw)
        if not line.name:
            continue
        if " " in line.name or not line.name.endswith("]") or "[" not in line.name:
            raise ExpectedFileError(
                f"{source}:{number}: {line.name!r} is not an item name; a line holds one name "
                f"such as test_op[add_bcast], then an optional 'sometimes', an optional "
                f"'if [not] CAPABILITY' and '# reason'")
        yield number, line


def parse(text: str, source: str = FILE_NAME,
          capabilities: Mapping[str, bool] = NO_CAPABILITIES) -> dict[str, Listed]:
    """{item name: Listed} of an expected-failures file's text: the lines that hold
    on a host with ``capabilities``."""
    listed: dict[str, Listed] = {}
    seen: set[str] = set()
    for number, line in _lines(text, source):
        if line.name in seen:
            raise ExpectedFileError(f"{source}:{number}: {line.name} is listed twice")
        seen.add(line.name)
        if _holds(line.condition, capabilities, f"{source}:{number}"):
            listed[line.name] = Listed(line.reason, strict=not line.sometimes)
    return listed


def load(path: str | PathLike[str],
         capabilities: Mapping[str, bool] = NO_CAPABILITIES) -> dict[str, Listed]:
    """The listed items of ``path`` that hold under ``capabilities``; {} when there
    is no such file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    return parse(text, str(path), capabilities)


def updated(text: str, outcomes: Mapping[str, str | None], header: str,
            capabilities: Mapping[str, bool] = NO_CAPABILITIES) -> str:
    """``text`` rewritten from a run: ``outcomes`` maps each item that ran to None
    when it did not fail, else to its failure's reason. An item that did not fail
    loses its line, a failed one gains one (or keeps its own, with the new reason),
    and the lines of items that did not run, and comments, stay as they were.
    A line whose condition does not hold on this host speaks of other hosts: it
    stays, unless its item failed here too, when the condition goes (it fails
    either way). A 'sometimes' line stays whether its item passed or failed here.
    ``header`` starts a file that had no text."""
    lines = text.splitlines() if text.strip() else [f"# {h}" if h else "#"
                                                     for h in header.splitlines()]
    kept: list[str] = []
    seen: set[str] = set()
    for number, raw in enumerate(lines, 1):
        line = _split(raw)
        if line.name in outcomes:
            seen.add(line.name)
            holds = _holds(line.condition, capabilities, f"line {number}")
            reason = outcomes[line.name]
            if reason is None:
                if holds and not line.sometimes:
                    continue
            else:
                raw = _line(line.name, reason, line.condition if holds else "", line.sometimes)
        kept.append(raw)
    added = sorted(name for name, reason in outcomes.items()
                   if reason is not None and name not in seen)
    return "\n".join(kept + [_line(name, outcomes[name] or "") for name in added]) + "\n"


def _line(name: str, reason: str, condition: str = "", sometimes: bool = False) -> str:
    listed = f"{name}  sometimes" if sometimes else name
    listed = f"{listed}  if {condition}" if condition else listed
    reason = " ".join(reason.split())[:_REASON_CHARS]
    return f"{listed}  # {reason}" if reason else listed
