"""The zoo file's validator: the field kinds its schema tables name, and the one
error (ZooError) that says which file, line and field is wrong and how to fix it.
The parsers (xpuperf.zoo.parse, .tiers, .model_file, .generation) are handed one
and check their part of the file with it. Pure; imports nothing of the zoo.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Mapping

# A model's (or LLM workload's) name, a path component of its results as it is
# (Validator.entry_name).
ENTRY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
# The values of a field of kind "pick" that are words: which of a scenario's batch
# sizes run, every one or only the smallest or largest (else a list of sizes).
PICKS = ("all", "min", "max")


class ZooError(ValueError):
    """A zoo.yaml problem, with its location: 'zoo.yaml:12: models.bert-torch.dtype: ...'."""


class Validator:
    """Checks a zoo file's values against the schema tables (field -> (required,
    kind)); each failure raises ZooError naming the file, the line of the field
    (from the loader's ``lines``), the field and the fix."""

    def __init__(self, path: Path, lines: dict[str, int]):
        self.path, self.lines = path, lines
        self._names: dict[tuple[str, str], str] = {}  # entry_name's: (kind, lower case) -> where

    def fail(self, where: str, message: str) -> None:
        probe = where
        while probe and probe not in self.lines:  # fall back to the nearest enclosing key
            probe = probe.rsplit(".", 1)[0] if "." in probe else ""
        line = f":{self.lines[probe]}" if probe else ""
        raise ZooError(f"{self.path}{line}: {where or 'top level'}: {message}")

    def entry_name(self, where: str, name: Any, kind: str = "models") -> None:
        """A model's (or workload's) name names its result folder and its items: it
        must be a path component as it is, and differ from the zoo's other entries
        of its ``kind`` in more than case. Else "x/conv", "x_conv" and "x conv" would write one
        result file, the last overwriting the others (on a case-insensitive
        filesystem "X-conv" and "x-conv" too)."""
        if not (isinstance(name, str) and ENTRY_NAME.fullmatch(name)):
            self.fail(where, f"the name {name!r} names the entry's result folder and items: "
                      "use letters, digits, '.', '_' and '-', starting with a letter or digit")
        other = self._names.setdefault((kind, name.lower()), where)
        if other != where:
            self.fail(where, f"differs from {other} only in case: one result folder would "
                      "hold both; rename one")

    def fields(self, where: str, raw: Any, spec: Mapping[str, tuple[bool, str]]) -> None:
        if not isinstance(raw, dict):
            self.fail(where, f"must be a mapping, got {type(raw).__name__}")
        for key in raw:
            if key not in spec:
                self.fail(f"{where}.{key}".lstrip("."),
                          f"unknown field {key!r} (known: {', '.join(spec)})")
        for key, (required, kind) in spec.items():
            if key not in raw:
                if required:
                    self.fail(where, f"missing required field {key!r}")
                continue
            self.kind(f"{where}.{key}".lstrip("."), raw[key], kind)

    def kind(self, where: str, value: Any, kind: str) -> None:
        ok = {
            "str": isinstance(value, str),
            "str?": value is None or isinstance(value, str),
            "bool": isinstance(value, bool),
            "int": isinstance(value, int) and not isinstance(value, bool),
            "num": isinstance(value, (int, float)) and not isinstance(value, bool),
            "map": isinstance(value, dict),
            "rgb": isinstance(value, list) and len(value) == 3 and all(
                isinstance(x, (int, float)) and not isinstance(x, bool) for x in value),
            "list": isinstance(value, list),
            "pick": isinstance(value, str) or (isinstance(value, list) and bool(value) and all(
                isinstance(x, int) and not isinstance(x, bool) for x in value)),
        }[kind]
        if not ok:
            wanted = {"str": "a string", "str?": "a string or null", "bool": "true or false",
                      "int": "an integer", "num": "a number", "map": "a mapping", "list": "a list",
                      "rgb": "three numbers [R, G, B]",
                      "pick": f"one of {', '.join(PICKS)} or a list of batch sizes"}[kind]
            self.fail(where, f"must be {wanted}, got {value!r}")

    def one_of(self, where: str, value: Any, allowed: tuple, what: str = "value") -> None:
        if value not in allowed:
            self.fail(where, f"unknown {what} {value!r} (known: {', '.join(map(str, allowed))})")
