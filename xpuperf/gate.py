"""The regression gate: this run's items against a baseline run's (pure, but for
``load_baseline``, which reads the files).

A baseline is either pytest-benchmark's JSON (--benchmark-json, or a run saved
under .benchmarks/) or an xpuperf reports folder (reports/<HARDWARE>/), read
through its result-*.json files. Only the baseline's results for this run's
hardware count. A performance item fails when its QPS fell, or its p99 latency
rose, by more than --max-regression percent against the same item (same
combination, batch size and scenario) in the baseline; p99 is compared only for
a run of at least MIN_P99_QUERIES queries, as with fewer it is the slowest query
or next to it, and one stall of the machine would decide. A metric item fails when
its task metric is lower than the baseline's by more than the zoo's max_drop for
the precision. Items the baseline lacks pass without comparison.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from xpuperf import report_folder
from xpuperf.report.bytemlperf import metric_name


MIN_P99_QUERIES = 100


class BaselineError(ValueError):
    """The baseline cannot be read or holds nothing for this hardware."""


@dataclass(frozen=True)
class PerfFigures:
    qps: float | None
    p99_ms: float | None


@dataclass(frozen=True)
class Baseline:
    """``perf`` is keyed by performance item id ("bert-torch-squad-fp32-bs4-offline"),
    ``metrics`` by combination, each (the metric's report name, its value)."""

    source: str
    hardware: str | None
    perf: Mapping[str, PerfFigures] = field(default_factory=dict)
    metrics: Mapping[str, tuple[str, float]] = field(default_factory=dict)


# --------------------------------------------------------------------------- reading

def load_baseline(path: str | Path, hardware: str) -> Baseline:
    """The baseline at ``path`` (a pytest-benchmark JSON file or a reports
    folder), restricted to ``hardware``."""
    path = Path(path)
    try:
        if path.is_dir():
            files = sorted(path.rglob("result-*.json"))
            if not files:
                raise BaselineError(f"{path} holds no result-*.json (an xpuperf reports folder)")
            manifest = report_folder.read(path)
            if manifest.get("finished") is not True:
                raise BaselineError(
                    f"{path} does not hold a finished run ({report_folder.MANIFEST} says "
                    f"{manifest.get('status', 'it did not finish') if manifest else 'nothing'}): "
                    "a run that died or was interrupted is no baseline; use a finished run's folder")
            docs = [json.loads(f.read_text()) for f in files]
            return from_result_jsons(docs, str(path), hardware)
        return from_benchmark_json(json.loads(path.read_text()), str(path), hardware)
    except OSError as e:
        raise BaselineError(f"cannot read {path}: {e.strerror or e}") from None
    except json.JSONDecodeError as e:
        raise BaselineError(f"{path} is not JSON: {e}") from None


def from_benchmark_json(doc: Any, source: str, hardware: str) -> Baseline:
    """pytest-benchmark's JSON: each benchmark's ``param`` is the item id and its
    ``extra_info`` holds xpuperf's QPS and latency percentiles."""
    if not isinstance(doc, Mapping) or not isinstance(doc.get("benchmarks"), list):
        raise BaselineError(f"{source}: not a pytest-benchmark JSON (no 'benchmarks' list)")
    machine = doc.get("machine_info") if isinstance(doc.get("machine_info"), Mapping) else {}
    xpu = machine.get("xpuperf") if isinstance(machine.get("xpuperf"), Mapping) else {}
    found = xpu.get("hardware")
    if found is not None and found != hardware:
        raise BaselineError(f"{source} holds a {found} run; this run tests {hardware}")
    perf = {}
    for bench in doc["benchmarks"]:
        extra = bench.get("extra_info") if isinstance(bench, Mapping) else None
        if not isinstance(extra, Mapping) or not isinstance(bench.get("param"), str):
            continue
        latency = extra.get("latency_ms") if isinstance(extra.get("latency_ms"), Mapping) else {}
        perf[bench["param"]] = PerfFigures(_num(extra.get("qps")), _num(latency.get("p99")))
    return Baseline(source=source, hardware=found, perf=perf)


def from_result_jsons(docs: list[Any], source: str, hardware: str) -> Baseline:
    """xpuperf's result-<precision>.json documents (xpuperf.report.bytemlperf)."""
    mine = [d for d in docs if isinstance(d, Mapping) and d.get("Backend") == hardware]
    if not mine:
        others = sorted({str(d.get("Backend")) for d in docs if isinstance(d, Mapping)})
        raise BaselineError(f"{source} holds results of {', '.join(others) or 'no hardware'}; "
                            f"this run tests {hardware}")
    perf: dict[str, PerfFigures] = {}
    metrics: dict[str, tuple[str, float]] = {}
    for doc in mine:
        combo = str(doc.get("Combination", ""))
        for point in doc.get("Performance") or []:
            if isinstance(point, Mapping) and point.get("BS") is not None:
                key = f"{combo}-bs{point['BS']}-{point.get('Scenario')}"
                perf[key] = PerfFigures(_num(point.get("QPS")), _num(point.get("P99 Latency")))
        acc = doc.get("Accuracy") if isinstance(doc.get("Accuracy"), Mapping) else {}
        primary = acc.get("Primary Metric")
        value = _num(acc.get(primary)) if isinstance(primary, str) else None
        if value is not None:
            metrics[combo] = (primary, value)
    return Baseline(source=source, hardware=hardware, perf=perf, metrics=metrics)


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


# --------------------------------------------------------------------------- judging

def check(record: Mapping[str, Any], baseline: Baseline,
          max_regression_pct: float) -> tuple[list[str], dict[str, Any]]:
    """(problems, comparison) of one item's record against the baseline: the
    messages that fail the item, and the figures to keep in its record."""
    suite = record.get("suite")
    if suite == "performance":
        return _check_perf(record, baseline, max_regression_pct)
    if suite == "metric":
        return _check_metric(record, baseline)
    return [], {}


def _check_perf(record: Mapping[str, Any], baseline: Baseline,
                max_regression_pct: float) -> tuple[list[str], dict[str, Any]]:
    key = f"{record.get('combination')}-bs{record.get('batch_size')}-{record.get('scenario')}"
    old = baseline.perf.get(key)
    if old is None:
        return [], {}
    qps = _num(record.get("qps"))
    latency = record.get("latency_ms") if isinstance(record.get("latency_ms"), Mapping) else {}
    p99 = _num(latency.get("p99"))
    comparison: dict[str, Any] = {"source": baseline.source, "qps": old.qps, "p99_ms": old.p99_ms,
                                  "max_regression_pct": max_regression_pct}
    problems = []
    if old.qps and qps is not None:
        change = regression(old.qps, qps, higher_is_better=True)
        comparison["qps_regression_pct"] = change
        if change > max_regression_pct:
            problems.append(f"QPS regressed {change:.1f}% against the baseline: {old.qps:.4g} -> "
                            f"{qps:.4g} samples/s (--max-regression {max_regression_pct:g}%)")
    queries = record.get("queries")
    if old.p99_ms and p99 is not None and isinstance(queries, int) and queries < MIN_P99_QUERIES:
        comparison["p99_note"] = f"not compared: {queries} queries (p99 needs {MIN_P99_QUERIES})"
    elif old.p99_ms and p99 is not None:
        change = regression(old.p99_ms, p99, higher_is_better=False)
        comparison["p99_regression_pct"] = change
        if change > max_regression_pct:
            problems.append(f"p99 latency regressed {change:.1f}% against the baseline: "
                            f"{old.p99_ms:.4g} -> {p99:.4g} ms (--max-regression "
                            f"{max_regression_pct:g}%)")
    return problems, comparison


def _check_metric(record: Mapping[str, Any], baseline: Baseline) -> tuple[list[str], dict[str, Any]]:
    old = baseline.metrics.get(str(record.get("combination")))
    primary = record.get("primary")
    metrics = record.get("metrics") if isinstance(record.get("metrics"), Mapping) else {}
    new = _num(metrics.get(primary)) if isinstance(primary, str) else None
    if old is None or new is None or old[0] != metric_name(primary):
        return [], {}
    drop = old[1] - new
    max_drop = _num(record.get("max_drop"))
    comparison = {"source": baseline.source, "metric": old[1], "drop": drop, "max_drop": max_drop}
    if max_drop is None or drop <= max_drop:
        return [], comparison
    return [f"{primary} dropped {drop:.3f} points against the baseline: {old[1]:.3f} -> {new:.3f}, "
            f"more than the {max_drop:g} tolerated for {record.get('precision')}"], comparison


def regression(old: float, new: float, higher_is_better: bool) -> float:
    """How much worse ``new`` is than ``old``, in percent of ``old`` (negative: better)."""
    change = 100.0 * (new - old) / old
    return -change if higher_is_better else change
