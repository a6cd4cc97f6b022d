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

from xpuperf.report.summary import NONFINITE_KEYS, PerfPoint, Row

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
DIFF_NAMES = {
    "mean_abs": "Mean Diff",
    "std_abs": "Std Diff",
    "max_abs": "Max Diff",
    "max_rel": "Max Rel-Diff",
    "mean_rel": "Mean Rel-Diff",
    "cosine": "Cosine",
}

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
        "Dataset": row.dataset,
        "Status": row.status,
        "Suites": {suite: res.outcome for suite, res in row.suites.items()},
        "Messages": row.messages,
        "Graph Compile": _compile(row),
        "Accuracy": _accuracy(row),
        "Performance": [_perf(p) for p in row.perf],
        "Audits": [{"Audit": a.audit, "Status": a.outcome, **({"Message": a.message} if a.message
                                                               else {})}
                   for a in row.audits],
    }
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


def _perf(point: PerfPoint) -> dict[str, Any]:
    # Latencies are in ms, as in ByteMLPerf's reports.
    entry = {
        "BS": point.batch_size,
        "Scenario": point.scenario,
        "QPS": point.qps,
        "AVG Latency": point.mean,
        "P50 Latency": point.p50,
        "P90 Latency": point.p90,
        "P99 Latency": point.p99,
        "MFU": point.mfu,
        "Peak RSS MB": point.peak_rss_mb,
        "FLOPs per Sample": point.flops_per_sample,
        "Bytes per Sample": point.bytes_per_sample,
        "Status": point.outcome,
    }
    if point.valid is not None:
        entry["Valid"] = point.valid
    if point.mlperf_qps is not None:
        entry["LoadGen QPS"] = point.mlperf_qps
    if point.message:
        entry["Message"] = point.message
    return entry


def _strict(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, Mapping):
        return {str(k): _strict(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_strict(v) for v in value]
    return value
