"""The per-op conformance table: op records (suite "op") -> pass rates per op (pure).

An op record carries the case, its op type, the category of its outcome
(xpuperf.conformance.opconformance.OUTCOMES: pass, conversion, compilation, run, mismatch;
a declined case is left out) and the reason; a case that never reached the
runner (an error in setup) has no category and counts as not run.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

FAILURE_CATEGORIES = ("conversion", "compilation", "run", "mismatch")


@dataclass
class OpRow:
    op_type: str
    cases: int = 0
    passed: int = 0
    expected: int = 0  # failures listed in the expected-failures file
    by_category: dict[str, int] = field(default_factory=dict)
    failures: list[tuple[str, str, str]] = field(default_factory=list)  # case, category, reason

    @property
    def pass_rate(self) -> float:
        return self.passed / self.cases if self.cases else 0.0


@dataclass
class OpTable:
    rows: list[OpRow]

    @property
    def cases(self) -> int:
        return sum(r.cases for r in self.rows)

    @property
    def passed(self) -> int:
        return sum(r.passed for r in self.rows)

    @property
    def expected(self) -> int:
        return sum(r.expected for r in self.rows)

    @property
    def unexpected(self) -> int:
        return self.cases - self.passed - self.expected

    @property
    def pass_rate(self) -> float:
        return self.passed / self.cases if self.cases else 0.0

    def totals(self) -> dict[str, int]:
        """Failures per category over all ops."""
        return {c: sum(r.by_category.get(c, 0) for r in self.rows) for c in FAILURE_CATEGORIES}

    def as_dict(self) -> dict[str, Any]:
        return {"cases": self.cases, "passed": self.passed, "pass_rate": self.pass_rate,
                "expected_failures": self.expected, "unexpected_failures": self.unexpected,
                "failures_by_category": self.totals(),
                "ops": {r.op_type: {"cases": r.cases, "passed": r.passed,
                                    "pass_rate": r.pass_rate, "by_category": r.by_category,
                                    "failures": [{"case": c, "category": k, "reason": why}
                                                 for c, k, why in r.failures]}
                        for r in self.rows}}


def op_table(records: Iterable[Mapping[str, Any]]) -> OpTable:
    """One row per op type, sorted by op type, of the op records among ``records``."""
    rows: dict[str, OpRow] = {}
    for rec in records:
        if rec.get("suite") != "op":
            continue
        category = str(rec.get("category") or "not run")
        if category == "declined":  # the backend takes no ONNX graphs: no pass rate
            continue
        row = rows.setdefault(str(rec.get("op_type", "?")), OpRow(str(rec.get("op_type", "?"))))
        row.cases += 1
        if category == "pass":
            row.passed += 1
            continue
        row.by_category[category] = row.by_category.get(category, 0) + 1
        row.expected += bool(rec.get("expected_failure"))
        row.failures.append((str(rec.get("case", "?")), category,
                             str(rec.get("reason") or rec.get("message") or "")))
    return OpTable(sorted(rows.values(), key=lambda r: r.op_type))
