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

from xpuperf.report.summary import NONFINITE_KEYS, AuditPoint, PerfPoint, Row, SuiteResult

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
        "Performance": [_perf(p) for p in row.perf],
        "Audits": [{"Audit": a.audit, "Status": a.outcome, **({"Message": a.message} if a.message
                                                               else {})}
                   for a in row.audits],
    }
    expected = {suite: res.expected for suite, res in row.suites.items() if res.expected}
    if expected:  # why the backend is known to fail them (its expected_failures.txt)
        doc["Expected Failure Reasons"] = expected
    # Where it ran, as MLPerf's system description says it (info: report.system).
    if row.host is not None:
        doc["Host"] = row.host
    if row.device_index is not None:
        doc["Device Index"] = row.device_index
    for key, name in (("nodes", "Nodes"), ("accelerators_per_node", "Accelerators per Node")):
        if info.get(key) is not None:
            doc[name] = info[key]
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
        "P99.9 Latency": point.p999,
        "Samples": point.samples,
        "MFU": point.mfu,
        "Peak FLOPS": point.peak_flops,
        "Peak FLOPS Source": point.peak_flops_source,
        "Peak RSS MB": point.peak_rss_mb,
        "Device Resident QPS": point.resident_qps,
        "Device P50 Latency": point.device_p50,
        "Device P90 Latency": point.device_p90,
        "H2D Bytes per s": point.h2d_bytes_per_s,
        "D2H Bytes per s": point.d2h_bytes_per_s,
        "Device Memory Peak MB": point.device_memory_peak_mb,
        "FLOPs per Sample": point.flops_per_sample,
        "Bytes per Sample": point.bytes_per_sample,
        "Status": point.outcome,
    }
    if point.window_qps:  # the samples --baseline's speed gate compares (xpuperf.gate)
        entry["Window QPS"] = point.window_qps
    if point.valid is not None:
        entry["Valid"] = point.valid
    if point.stable is not None:
        entry["Steady"] = point.stable
    if point.spread is not None:
        entry["QPS Spread"] = point.spread
    if point.max_spread is not None:
        entry["Max QPS Spread"] = point.max_spread
    if point.target_qps is not None:
        entry["Target QPS"] = point.target_qps
    if point.mlperf_qps is not None:
        entry["LoadGen QPS"] = point.mlperf_qps
    if point.resident_skipped:
        entry["Device Resident Skipped"] = point.resident_skipped
    if point.energy_method:
        entry.update({"Avg Watts": point.avg_watts, "J per Query": point.j_per_query,
                      "J per Sample": point.j_per_sample, "Energy Method": point.energy_method})
    if point.energy_unavailable:
        entry["Energy Unavailable"] = point.energy_unavailable
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
    row.perf = [_read_perf(e) for e in doc["Performance"]]
    row.audits = [AuditPoint(str(a.get("Audit", "")), str(a.get("Status", "")),
                             str(a.get("Message", ""))) for a in doc.get("Audits") or []]
    row.host = str(doc["Host"]) if doc.get("Host") else None
    row.device_index = str(doc["Device Index"]) if doc.get("Device Index") is not None else None
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


def _read_perf(entry: Mapping[str, Any]) -> PerfPoint:
    bs = entry.get("BS")
    return PerfPoint(
        batch_size=bs if isinstance(bs, int) else None, scenario=str(entry.get("Scenario", "")),
        outcome=str(entry.get("Status", "")), message=str(entry.get("Message", "")),
        qps=_float(entry.get("QPS")), mean=_float(entry.get("AVG Latency")),
        p50=_float(entry.get("P50 Latency")), p90=_float(entry.get("P90 Latency")),
        p99=_float(entry.get("P99 Latency")), p999=_float(entry.get("P99.9 Latency")),
        samples=entry.get("Samples"), mfu=_float(entry.get("MFU")),
        peak_flops=_float(entry.get("Peak FLOPS")),
        peak_flops_source=str(entry.get("Peak FLOPS Source") or ""),
        peak_rss_mb=_float(entry.get("Peak RSS MB")),
        resident_qps=_float(entry.get("Device Resident QPS")),
        device_p50=_float(entry.get("Device P50 Latency")),
        device_p90=_float(entry.get("Device P90 Latency")),
        h2d_bytes_per_s=_float(entry.get("H2D Bytes per s")),
        d2h_bytes_per_s=_float(entry.get("D2H Bytes per s")),
        device_memory_peak_mb=_float(entry.get("Device Memory Peak MB")),
        resident_skipped=str(entry.get("Device Resident Skipped") or ""),
        flops_per_sample=_float(entry.get("FLOPs per Sample")),
        bytes_per_sample=_float(entry.get("Bytes per Sample")),
        valid=entry.get("Valid"), target_qps=_float(entry.get("Target QPS")),
        stable=entry.get("Steady"), spread=_float(entry.get("QPS Spread")),
        max_spread=_float(entry.get("Max QPS Spread")),
        mlperf_qps=_float(entry.get("LoadGen QPS")), avg_watts=_float(entry.get("Avg Watts")),
        j_per_query=_float(entry.get("J per Query")),
        j_per_sample=_float(entry.get("J per Sample")),
        energy_method=str(entry.get("Energy Method") or ""),
        energy_unavailable=str(entry.get("Energy Unavailable") or ""))


def _float(value: Any) -> float | None:
    """A number of the document: _strict's spellings of non-finite values read back."""
    if isinstance(value, str):
        return {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}.get(value)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def _floats(mapping: Mapping[str, Any]) -> dict[str, float]:
    return {k: f for k, v in mapping.items() if (f := _float(v)) is not None}
