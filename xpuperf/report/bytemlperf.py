"""One Row as a ByteMLPerf result file (result-<precision>.json), pure.

The shape and the key names follow ByteMLPerf's reports, so that tools which
read those files read ours. The dict is strict JSON: a non-finite number (a NaN
diff is exactly what a failing run reports) becomes the string "NaN", "Infinity"
or "-Infinity" rather than a bare NaN token that strict parsers reject, or a
null that would read as "not measured".
"""
from __future__ import annotations

import math
from typing import Any, Mapping

from xpuperf.conformance.numerics import NONFINITE_KEYS
from xpuperf.records import (ACCURACY, COMPILE, NUMERICS, SYSTEM, WHERE, PerfPoint, field_of,
                             measured, read_entry, result_entry)
from xpuperf.report.summary import AuditPoint, Row, SuiteResult

# ByteMLPerf's names for the task metrics; a metric not listed keeps its own name.
METRIC_NAMES = {
    "f1": "F1 Score",
    "exact_match": "Exact Match",
    "em": "Exact Match",
    "top1": "Top-1",
    "top-1": "Top-1",
    "top5": "Top-5",
    "top-5": "Top-5",
    "accuracy": "Accuracy",
    "auc": "AUC",
}

# DiffStats key -> ByteMLPerf's name for it.
DIFF_NAMES = {f.attr: f.label for f in NUMERICS}

NONFINITE_NAMES = {"nan": "NaN", "inf": "Inf"}

# The figures the code below writes otherwise than as the tables' values.
_COVERAGE = field_of(COMPILE, "coverage").label  # a fraction, written in percent
_COMPILE_STATUS = field_of(COMPILE, "compile_status").label
_PRIMARY = field_of(ACCURACY, "primary").label  # named as the metrics are


def reference_label(metric: str) -> str:
    """The result file's key of a task metric's reference value."""
    return f"Reference {metric}"


def count_label(key: str) -> str:
    """The result file's key of the summed count of NONFINITE_KEYS ``key``."""
    return f"{NONFINITE_NAMES[key]} Count"


def metric_name(key: str) -> str:
    return METRIC_NAMES.get(key.lower(), key)


def model_name(row: Row) -> str:
    """ByteMLPerf's workload name: 'BERT-TORCH-FP16'."""
    return f"{row.model}-{row.precision}".upper()


def result_json(row: Row, hardware: str, info: Mapping[str, Any]) -> dict[str, Any]:
    """The ByteMLPerf result document of one combination; strict-JSON-safe."""
    doc: dict[str, Any] = {
        "Model": model_name(row),
        "Backend": hardware,
        "Host Info": dict(info),
        "Combination": row.combination,
        "Zoo Model": row.model,
        "Family": row.family,
        "Framework": row.framework,
        "Domain": row.domain,
        "Precision": row.precision,
        "Dataset": row.dataset,
        "Status": row.status,
        "Suites": {suite: res.outcome for suite, res in row.suites.items()},
        "Messages": row.messages,
        "Graph Compile": _compile(row),
        "Accuracy": _accuracy(row),
        "Performance": [p.as_result() for p in row.perf],
        "Audits": [{"Audit": a.audit, "Status": a.outcome, **({"Message": a.message} if a.message
                                                               else {})}
                   for a in row.audits],
    }
    expected = {suite: res.expected for suite, res in row.suites.items() if res.expected}
    if expected:  # why the backend is known to fail them (its expected_failures.txt)
        doc["Expected Failure Reasons"] = expected
    # Where it ran, as MLPerf's system description says it (info: report.system).
    doc.update(result_entry(row, WHERE))
    doc.update({f.label: value for f in SYSTEM if measured(value := f.read(info))})
    if row.generation:  # LLM serving items: their figures as recorded (xpuperf.records)
        doc["Generation"] = row.generation
    return _strict(doc)


def _compile(row: Row) -> dict[str, Any]:
    res = row.suites.get("compile")
    doc = {"Model": model_name(row), **result_entry(row, COMPILE)}
    doc[_COVERAGE] = None if row.coverage is None else round(100.0 * row.coverage, 2)
    doc[_COMPILE_STATUS] = row.compile_status or (res.outcome if res else "not run")
    doc["Messages"] = list(res.messages) if res else []
    return doc


def _accuracy(row: Row) -> dict[str, Any]:
    acc: dict[str, Any] = {metric_name(k): v for k, v in row.metrics.items()}
    acc.update({reference_label(metric_name(k)): v for k, v in row.reference_metrics.items()})
    acc.update(result_entry(row, ACCURACY))
    if row.primary:
        acc[_PRIMARY] = metric_name(row.primary)
    acc.update({name: row.diff.get(key) for key, name in DIFF_NAMES.items()})
    acc.update({count_label(key): int(row.diff[key]) for key in NONFINITE_KEYS if key in row.diff})
    for suite in ("metric", "numerics"):
        res = row.suites.get(suite)
        acc[f"{suite.capitalize()} Status"] = res.outcome if res else "not run"
    return acc


def _strict(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, Mapping):
        return {str(k): _strict(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_strict(v) for v in value]
    return value


class ResultError(ValueError):
    """A result document that is not one xpuperf wrote."""


def row_from_result(doc: Mapping[str, Any]) -> Row:
    """The Row that ``doc`` (a result_json document) was written from, as far as the
    document holds it: the combination's verdicts and figures, not per-output diffs.
    This is how a reports folder is read back (xpuperf compare)."""
    missing = [k for k in ("Combination", "Zoo Model", "Precision", "Status", "Performance")
               if k not in doc]
    if missing:
        raise ResultError(f"no {', '.join(missing)}: not a result file of this xpuperf "
                          "(rerun the session to rewrite it)")
    gc, acc = doc.get("Graph Compile") or {}, doc.get("Accuracy") or {}
    row = Row(combination=str(doc["Combination"]), model=str(doc["Zoo Model"]),
              dataset=str(doc.get("Dataset", "")), precision=str(doc["Precision"]),
              framework=str(doc.get("Framework", "")), domain=str(doc.get("Domain", "")),
              family=str(doc.get("Family") or doc["Zoo Model"]),
              hardware=str(doc.get("Backend", "")), status=str(doc["Status"]),
              **read_entry(gc, COMPILE), **read_entry(acc, ACCURACY),
              **read_entry(doc, WHERE))
    row.suites = {s: SuiteResult(str(o)) for s, o in (doc.get("Suites") or {}).items()}
    for suite, reasons in (doc.get("Expected Failure Reasons") or {}).items():
        if suite in row.suites:
            row.suites[suite].expected = [str(r) for r in reasons]
    for message in doc.get("Messages") or []:
        suite, _, text = str(message).partition(": ")
        if suite in row.suites:
            row.suites[suite].messages.append(text)
    _read_accuracy(row, acc)
    if row.compile_status == "not run":  # _compile's word for no compile item
        row.compile_status = ""
    row.coverage = None if row.coverage is None else row.coverage / 100.0
    row.perf = [PerfPoint.from_result(e) for e in doc["Performance"]]
    row.audits = [AuditPoint(str(a.get("Audit", "")), str(a.get("Status", "")),
                             str(a.get("Message", ""))) for a in doc.get("Audits") or []]
    row.generation = [dict(g) for g in doc.get("Generation") or []]  # as result_json wrote them
    return row


def _read_accuracy(row: Row, acc: Mapping[str, Any]) -> None:
    # The task metrics are the keys that have a reference beside them.
    row.metrics = _floats({k: acc[k] for k in acc if reference_label(k) in acc})
    row.reference_metrics = _floats({k: acc[reference_label(k)] for k in row.metrics})
    row.metric = row.metrics.get(row.primary) if row.primary else None
    row.reference = row.reference_metrics.get(row.primary) if row.primary else None
    row.diff = _floats({key: acc.get(name) for key, name in DIFF_NAMES.items()})
    row.diff.update({key: float(acc[count_label(key)]) for key in NONFINITE_NAMES
                     if count_label(key) in acc})


def _float(value: Any) -> float | None:
    """A number of the document: _strict's spellings of non-finite values read back."""
    if isinstance(value, str):
        return {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}.get(value)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def _floats(mapping: Mapping[str, Any]) -> dict[str, float]:
    return {k: f for k, v in mapping.items() if (f := _float(v)) is not None}
