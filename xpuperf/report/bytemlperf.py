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
from xpuperf.records import NUMERICS, PerfPoint
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
    if row.device_index is not None:
        doc["Device Index"] = row.device_index
    if row.generation:  # LLM serving items: their figures as recorded (xpuperf.records)
        doc["Generation"] = row.generation
    return _strict(doc)


def _compile(row: Row) -> dict[str, Any]:
    coverage = None if row.coverage is None else round(100.0 * row.coverage, 2)
    res = row.suites.get("compile")
    return {
        "Model": model_name(row),
        "Compile Duration": row.compile_seconds,
        "Cached Compile Duration": row.compile_seconds_cached,
        "Compile Duration Note": row.compile_times_note,
        "Compile Precision": row.precision_used,
        "Subgraph Coverage": coverage,
        "Nodes Total": row.nodes_total,
        "Nodes Native": row.nodes_native,
        "Fallback Ops": row.fallback_ops,
        "Artifact Bytes": row.artifact_bytes,
        "Cached": row.compile_cached,
        "FLOPs per Sample": row.flops_per_sample,
        "Details": row.compile_details,
        "Status": row.compile_status or (res.outcome if res else "not run"),
        "Messages": list(res.messages) if res else [],
    }


def _accuracy(row: Row) -> dict[str, Any]:
    acc: dict[str, Any] = {metric_name(k): v for k, v in row.metrics.items()}
    acc.update({f"Reference {metric_name(k)}": v for k, v in row.reference_metrics.items()})
    if row.primary is not None:
        acc["Primary Metric"] = metric_name(row.primary)
    acc["Drop"] = row.drop
    acc["Max Drop"] = row.max_drop
    acc["Weights"] = row.weights
    acc["Seeded Weights"] = row.seeded_weights
    acc["Data Source"] = row.data_source
    acc.update({name: row.diff.get(key) for key, name in DIFF_NAMES.items()})
    acc.update({f"{NONFINITE_NAMES[key]} Count": int(row.diff[key])
                for key in NONFINITE_KEYS if key in row.diff})
    if row.histogram is not None:
        acc["Diff Histogram"] = row.histogram
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
              hardware=str(doc.get("Backend", "")), weights=str(acc.get("Weights") or ""),
              status=str(doc["Status"]))
    row.suites = {s: SuiteResult(str(o)) for s, o in (doc.get("Suites") or {}).items()}
    for suite, reasons in (doc.get("Expected Failure Reasons") or {}).items():
        if suite in row.suites:
            row.suites[suite].expected = [str(r) for r in reasons]
    for message in doc.get("Messages") or []:
        suite, _, text = str(message).partition(": ")
        if suite in row.suites:
            row.suites[suite].messages.append(text)
    _read_accuracy(row, acc)
    row.compile_status = gc.get("Status") if gc.get("Status") != "not run" else None
    row.compile_seconds = _float(gc.get("Compile Duration"))
    row.compile_seconds_cached = _float(gc.get("Cached Compile Duration"))
    row.compile_times_note = str(gc.get("Compile Duration Note") or "")
    row.precision_used = gc.get("Compile Precision")
    cov = _float(gc.get("Subgraph Coverage"))
    row.coverage = None if cov is None else cov / 100.0
    row.nodes_total, row.nodes_native = gc.get("Nodes Total"), gc.get("Nodes Native")
    row.fallback_ops = list(gc.get("Fallback Ops") or [])
    row.artifact_bytes, row.compile_cached = gc.get("Artifact Bytes"), gc.get("Cached")
    row.flops_per_sample = _float(gc.get("FLOPs per Sample"))
    row.perf = [PerfPoint.from_result(e) for e in doc["Performance"]]
    row.audits = [AuditPoint(str(a.get("Audit", "")), str(a.get("Status", "")),
                             str(a.get("Message", ""))) for a in doc.get("Audits") or []]
    return row


def _read_accuracy(row: Row, acc: Mapping[str, Any]) -> None:
    primary = acc.get("Primary Metric")
    # The task metrics are the keys that have a reference beside them.
    row.metrics = _floats({k: acc[k] for k in acc if f"Reference {k}" in acc})
    row.reference_metrics = _floats({k: acc[f"Reference {k}"] for k in row.metrics})
    row.primary = primary
    row.metric = row.metrics.get(primary) if primary else None
    row.reference = row.reference_metrics.get(primary) if primary else None
    row.drop, row.max_drop = _float(acc.get("Drop")), _float(acc.get("Max Drop"))
    row.seeded_weights = acc.get("Seeded Weights")
    row.data_source = acc.get("Data Source")
    row.diff = _floats({key: acc.get(name) for key, name in DIFF_NAMES.items()})
    row.diff.update({key: float(acc[f"{name} Count"]) for key, name in NONFINITE_NAMES.items()
                     if f"{name} Count" in acc})
    row.histogram = acc.get("Diff Histogram")


def _float(value: Any) -> float | None:
    """A number of the document: _strict's spellings of non-finite values read back."""
    if isinstance(value, str):
        return {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}.get(value)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def _floats(mapping: Mapping[str, Any]) -> dict[str, float]:
    return {k: f for k, v in mapping.items() if (f := _float(v)) is not None}
