"""Reading a stored baseline (--baseline PATH): pytest-benchmark's JSON
(--benchmark-json, or a run saved under .benchmarks/) or an xpuperf reports
folder (reports/<HARDWARE>/), read through its result-*.json files. Only the
baseline's results for this run's hardware count. Each performance item keeps
its throughput samples (the run's window QPS), its steadiness and its p99;
each micro-benchmark item (keyed by its case) its window latencies, as calls
per second; each metric item its task metric. xpuperf.gate.judge compares them.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Mapping

from xpuperf import report_folder
from xpuperf.cases import MICRO_SUITE
from xpuperf.gate.verdict import MAX_SAMPLES, from_latencies
from xpuperf.records import ACCURACY, PerfPoint, field_of


class BaselineError(ValueError):
    """The baseline cannot be read or holds nothing for this hardware."""


@dataclass(frozen=True)
class PerfFigures:
    """One performance item of the baseline: ``samples`` are its window
    throughputs (empty in a baseline written before they were kept), ``stable``
    whether its windows agreed (None: not said)."""

    qps: float | None
    p99_ms: float | None
    samples: tuple[float, ...] = ()
    stable: bool | None = None


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
            micro = path / report_folder.MICRO_JSON
            if not files and not micro.is_file():
                raise BaselineError(f"{path} holds no result-*.json nor {micro.name} (an "
                                    "xpuperf reports folder)")
            manifest = report_folder.read(path)
            if manifest.get("finished") is not True:
                raise BaselineError(
                    f"{path} does not hold a finished run ({report_folder.MANIFEST} says "
                    f"{manifest.get('status', 'it did not finish') if manifest else 'nothing'}): "
                    "a run that died or was interrupted is no baseline; use a finished run's folder")
            docs = [json.loads(f.read_text()) for f in files]
            found = from_result_jsons(docs, str(path), hardware) if docs else Baseline(
                str(path), hardware)
            if not micro.is_file():
                return found
            return replace(found, perf={**found.perf, **from_micro_json(
                json.loads(micro.read_text()), str(micro), hardware)})
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
        perf[bench["param"]] = (_micro(extra) if extra.get("suite") == MICRO_SUITE
                                else _figures(PerfPoint.from_record(extra, outcome="")))
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
        for entry in doc.get("Performance") or []:
            point = PerfPoint.from_result(entry) if isinstance(entry, Mapping) else None
            if point is not None and point.batch_size is not None:
                perf[f"{combo}-bs{point.batch_size}-{point.scenario}"] = _figures(point)
        acc = doc.get("Accuracy") if isinstance(doc.get("Accuracy"), Mapping) else {}
        primary = acc.get(field_of(ACCURACY, "primary").label)
        value = _num(acc.get(primary)) if isinstance(primary, str) else None
        if value is not None:
            metrics[combo] = (primary, value)
    return Baseline(source=source, hardware=hardware, perf=perf, metrics=metrics)


def from_micro_json(doc: Any, source: str, hardware: str) -> dict[str, PerfFigures]:
    """micro_perf.json (xpuperf.report.microperf.document): each case's figures."""
    if not isinstance(doc, Mapping) or not isinstance(doc.get("ops"), Mapping):
        raise BaselineError(f"{source}: not a micro_perf.json (no 'ops' object)")
    if doc.get("hardware") != hardware:
        raise BaselineError(f"{source} holds a {doc.get('hardware')} run; this run tests "
                            f"{hardware}")
    return {str(entry["case"]): _micro(entry) for entries in doc["ops"].values()
            for entry in entries if isinstance(entry, Mapping) and entry.get("case")}


def _micro(entry: Mapping[str, Any]) -> PerfFigures:
    """A micro item: its window latencies as throughputs (calls per second)."""
    latency = _num(entry.get("latency(us)"))
    windows = [w for w in entry.get("window_latency_us") or [] if _num(w) is not None]
    return PerfFigures(1e6 / latency if latency else None, None,
                       tuple(from_latencies(windows)[:MAX_SAMPLES]))


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def _figures(point: PerfPoint) -> PerfFigures:
    """What the gate compares of a stored point: numbers only where finite, and of
    the window throughputs the positive ones (a hand-edited or foreign file's odd
    entries are left out rather than trusted)."""
    def finite(value: float | None) -> float | None:
        return value if value is not None and math.isfinite(value) else None

    return PerfFigures(finite(point.qps), finite(point.p99),
                       tuple(q for q in point.window_qps[:MAX_SAMPLES] if q > 0), point.stable)
