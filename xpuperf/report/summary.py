"""Merge the result records of one session into one Row per combination (pure).

Records follow xpuperf.records. Any of them may be partial: an item that failed
before it measured anything carries only its identity, outcome and message, so
every measured field of a Row may be None and every reader must cope with that.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, make_dataclass
from typing import Any, Iterable, Mapping

from backends.base import PRECISIONS
from xpuperf.conformance.numerics import DIFF_KEYS, LOWER_IS_WORSE, NONFINITE_KEYS
from xpuperf.records import ACCURACY, COMPILE, SUITES, WHERE, Field, PerfPoint, measured


# Worst first: a suite whose items disagree shows the worst of them, except that a
# skipped item does not hide the passed ones beside it.
# An expected failure (xpuperf.conformance.expected) ranks between a failure and a pass.
_SEVERITY = {"error": 4, "failed": 3, "xfailed": 2, "passed": 1, "skipped": 0}
_FAILING = frozenset({"failed", "error"})

_PREFERRED_SCENARIO = "offline"
# A message longer than this whose text another item of the combination already
# reported (a worker's crash dump, handed to every item of its group) is kept
# once: the later ones point at the first.
_REPEAT_MIN = 300
# The counts of non-finite values among the numerics (the reference's too).
_COUNTS = (*NONFINITE_KEYS, "reference_nonfinite")
# Record keys that say which item a record is, not what it measured.
_IDENTITY = frozenset({"suite", "combination", "model", "dataset", "precision", "hardware",
                       "framework", "domain", "family", "weights", "outcome", "message",
                       "audit", "expected_failure", "expected_reason"})
# And the keys of an audit record that say where and how long it ran (its pytest
# item, the host of the page's header): the page shows an audit's measured figures only, three
# audits per combination; records.json keeps these.
_AUDIT_BOOKKEEPING = _IDENTITY | {"item", "host", "duration_s"}


@dataclass
class SuiteResult:
    """The outcome of one suite's items for one combination."""

    outcome: str
    messages: list[str] = field(default_factory=list)
    expected: list[str] = field(default_factory=list)  # known-failure reasons of its items


@dataclass
class AuditPoint:
    """One integrity audit of a combination."""

    audit: str
    outcome: str
    message: str = ""
    figures: dict[str, Any] = field(default_factory=dict)


# A combination's compile and accuracy figures and where it ran, one attribute each as the tables
# name them (None or empty where not measured): Row's base, so that a figure added
# to a table is a Row attribute with no edit here.
_Figures = make_dataclass("_Figures", [(f.attr, f.annotation, f.default())
                                       for f in COMPILE + ACCURACY + WHERE])


@dataclass(kw_only=True)
class Row(_Figures):
    """Everything the reports show about one combination: the tables' figures
    (_Figures) and these."""

    combination: str
    model: str
    dataset: str
    precision: str
    framework: str = ""
    domain: str = ""
    family: str = ""
    hardware: str = ""
    status: str = "skipped"
    suites: dict[str, SuiteResult] = field(default_factory=dict)
    # metric: the primary metric's value and reference, and every metric's
    metric: float | None = None
    reference: float | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    reference_metrics: dict[str, float] = field(default_factory=dict)
    # numerics
    diff: dict[str, float] = field(default_factory=dict)
    outputs: dict[str, dict[str, float]] = field(default_factory=dict)
    tolerance: dict[str, float] = field(default_factory=dict)
    # performance
    perf: list[PerfPoint] = field(default_factory=list)
    audits: list[AuditPoint] = field(default_factory=list)
    # generation (suites/llm): one record's figures per item, with its
    # scenario (none for the accuracy item), outcome and message
    generation: list[dict[str, Any]] = field(default_factory=list)

    # Long message texts already kept, and where (xpuperf's own bookkeeping).
    _seen: dict[str, str] = field(default_factory=dict, repr=False, compare=False)

    @property
    def failed(self) -> bool:
        return self.status == "failed"

    @property
    def messages(self) -> list[str]:
        """Every failure or skip reason, each prefixed with its suite."""
        return [f"{suite}: {m}" for suite, res in self.suites.items() for m in res.messages]

    @property
    def output_columns(self) -> list[str]:
        """The DiffStats keys any output carries: the known ones in order, then the rest."""
        seen = {k for stats in self.outputs.values() for k in stats}
        # Counts of non-finite values that are all 0 say nothing (the page says so
        # once): three columns of zeros per combination of a tier.
        if not any(stats.get(k) for stats in self.outputs.values() for k in _COUNTS):
            seen -= set(_COUNTS)
        return [k for k in DIFF_KEYS if k in seen] + sorted(seen - set(DIFF_KEYS))

    @property
    def throughput(self) -> list[PerfPoint]:
        """The measured points of one scenario (offline when measured), by batch size.

        Plots and short tables show one curve per combination; offline is
        ByteMLPerf's throughput figure, so it wins when present.
        """
        measured = [p for p in self.perf if p.qps is not None and p.batch_size is not None]
        scenarios = {p.scenario for p in measured}
        if not scenarios:
            return []
        scenario = _PREFERRED_SCENARIO if _PREFERRED_SCENARIO in scenarios else min(scenarios)
        return sorted((p for p in measured if p.scenario == scenario), key=lambda p: p.batch_size)

    @property
    def best(self) -> PerfPoint | None:
        """The throughput point of the highest QPS: the figure hardware is chosen on."""
        return max(self.throughput, key=lambda p: p.qps, default=None)

    @property
    def loaded(self) -> PerfPoint | None:
        """The point whose p99 says most about latency under load: the server run
        (Poisson arrivals at a stated QPS), else a single stream, else none."""
        for scenario in ("server", "single_stream"):
            points = [p for p in self.perf if p.scenario == scenario and p.p99 is not None]
            if points:
                return min(points, key=lambda p: p.batch_size or 0)
        return None

    @property
    def latency_point(self) -> PerfPoint | None:
        """The p99 every summary shows (the page and the terminal alike): under
        load where measured, else the largest batch size's offline run."""
        points = self.throughput
        return self.loaded or (points[-1] if points else None)

    @property
    def expected_reasons(self) -> list[str]:
        """Why the backend is known to fail this combination's items (its
        expected_failures.txt), each once."""
        return list(dict.fromkeys(r for res in self.suites.values() for r in res.expected))

    @property
    def llm_throughput(self) -> dict[str, Any] | None:
        """The LLM serving item of the most output tokens per second."""
        return max((g for g in self.generation if g.get("output_tokens_per_s") is not None),
                   key=lambda g: g["output_tokens_per_s"], default=None)

    @property
    def llm_latency(self) -> dict[str, Any] | None:
        """The LLM serving item whose TTFT and TPOT a summary shows: one request at
        a time where measured, else the server run, else any with a TTFT."""
        timed = [g for g in self.generation if (g.get("ttft_ms") or {}).get("p99") is not None]
        for scenario in ("single_stream", "server"):
            for g in timed:
                if g.get("scenario") == scenario:
                    return g
        return timed[0] if timed else None

    @property
    def best_mfu(self) -> float | None:
        """The highest MFU any performance item reached."""
        return max((p.mfu for p in self.perf if p.mfu is not None), default=None)

    @property
    def peak_rss_mb(self) -> float | None:
        """The highest resident memory of any performance item."""
        return max((p.peak_rss_mb for p in self.perf if p.peak_rss_mb is not None), default=None)

    @property
    def device_memory_peak_mb(self) -> float | None:
        """The highest device memory any performance item allocated, where the
        backend could say: it replaces the host's RSS in the summary."""
        return max((p.device_memory_peak_mb for p in self.perf
                    if p.device_memory_peak_mb is not None), default=None)

    @property
    def best_resident(self) -> PerfPoint | None:
        """The point of the highest device-resident QPS."""
        return max((p for p in self.perf if p.resident_qps is not None),
                   key=lambda p: p.resident_qps, default=None)

    @property
    def audits_passed(self) -> str:
        """'2/3' audits passed, or '-' when none ran."""
        ran = [a for a in self.audits if a.outcome != "skipped"]
        if not ran:
            return "-"
        return f"{sum(a.outcome == 'passed' for a in ran)}/{len(ran)}"


def summarize(records: Iterable[Mapping[str, Any]]) -> list[Row]:
    """One Row per combination, sorted by model, then precision (fp32 first), then dataset."""
    rows: dict[str, Row] = {}
    for rec in records:
        combo = str(rec.get("combination") or _combination_of(rec))
        row = rows.get(combo)
        if row is None:
            row = rows[combo] = Row(
                combination=combo, model=str(rec.get("model", "")),
                dataset=str(rec.get("dataset", "")), precision=str(rec.get("precision", "")),
                framework=str(rec.get("framework", "")), domain=str(rec.get("domain", "")),
                family=str(rec.get("family") or rec.get("model", "")),
                hardware=str(rec.get("hardware", "")), weights=str(rec.get("weights", "")))
        _merge(row, rec)
    for row in rows.values():
        _finish(row)
    return sorted(rows.values(), key=row_key)


def _combination_of(rec: Mapping[str, Any]) -> str:
    return "-".join(str(rec.get(k, "?")) for k in ("model", "dataset", "precision"))


def row_key(row: Row) -> tuple[str, int, str, str]:
    """The order of rows on every page: by model, then precision (fp32 first), then dataset."""
    rank = PRECISIONS.index(row.precision) if row.precision in PRECISIONS else len(PRECISIONS)
    return (row.model, rank, row.precision, row.dataset)


def _merge(row: Row, rec: Mapping[str, Any]) -> None:
    suite = str(rec.get("suite", "unknown"))
    outcome = str(rec.get("outcome", "error"))
    message = _once(row, suite, str(rec.get("message") or ""))
    if not row.weights and rec.get("weights"):
        row.weights = str(rec["weights"])
    _merge_fields(row, rec, WHERE)

    res = row.suites.get(suite)
    if res is None:
        res = row.suites[suite] = SuiteResult(outcome)
    elif _SEVERITY.get(outcome, 3) > _SEVERITY.get(res.outcome, 3):
        res.outcome = outcome
    if outcome == "xfailed" and rec.get("expected_reason") and \
            str(rec["expected_reason"]) not in res.expected:
        res.expected.append(str(rec["expected_reason"]))
    if suite == "performance":
        _merge_perf(row, rec, outcome, message)
        if message:
            point = row.perf[-1]
            label = " ".join(x for x in (f"bs{point.batch_size}" if point.batch_size else "",
                                         point.scenario) if x)
            res.messages.append(f"{label}: {message}" if label else message)
        return
    if suite == "generation":
        figures = {k: v for k, v in rec.items() if k not in _IDENTITY}
        row.generation.append({"scenario": None, **figures, "outcome": outcome,
                               "message": message})
        if message:
            label = figures.get("scenario") or "accuracy"
            res.messages.append(f"{label}: {message}")
        return
    if suite == "audit":
        name = str(rec.get("audit") or "")
        row.audits.append(AuditPoint(audit=name, outcome=outcome, message=message,
                                     figures={k: v for k, v in rec.items()
                                              if k not in _AUDIT_BOOKKEEPING}))
        if message:
            res.messages.append(f"{name}: {message}" if name else message)
        return
    if message:
        res.messages.append(message)
    if suite == "metric":
        _merge_metric(row, rec)
    elif suite == "numerics":
        _merge_numerics(row, rec)
    elif suite == "compile":
        _merge_compile(row, rec, outcome)


def _once(row: Row, suite: str, message: str) -> str:
    """``message``, or where its long body (all but the first line) was already
    reported for this combination, its first line and a pointer to the first."""
    head, _, body = message.partition("\n")
    if len(body) < _REPEAT_MIN:
        return message
    if body not in row._seen:
        row._seen[body] = suite
        return message
    return f"{head}\n[the same output as under {row._seen[body]} above, shown once]"


def _merge_fields(row: Row, rec: Mapping[str, Any], table: tuple[Field, ...]) -> None:
    """Each figure of ``table`` that ``rec`` measured onto ``row``: a later
    record's replaces an earlier's, a figure it lacks keeps the earlier's."""
    for f in table:
        value = f.read(rec)
        if measured(value):
            setattr(row, f.attr, value)


def _merge_metric(row: Row, rec: Mapping[str, Any]) -> None:
    row.metrics.update(_numbers(rec.get("metrics")))
    row.reference_metrics.update(_numbers(rec.get("reference_metrics")))
    _merge_fields(row, rec, ACCURACY)


def _merge_numerics(row: Row, rec: Mapping[str, Any]) -> None:
    for name, stats in (rec.get("outputs") or {}).items():
        row.outputs[str(name)] = _numbers(stats)
    row.tolerance.update(_numbers(rec.get("tolerance")))
    _merge_fields(row, rec, ACCURACY)
    hist = rec.get("histogram")
    # Bins are drawn from edge i to edge i+1: a histogram of any other shape is unreadable.
    if isinstance(hist, Mapping) and hist.get("counts") and \
            len(hist.get("edges") or ()) == len(hist["counts"]) + 1:
        row.histogram = {"edges": list(hist["edges"]), "counts": list(hist["counts"])}


def _merge_compile(row: Row, rec: Mapping[str, Any], outcome: str) -> None:
    _merge_fields(row, rec, COMPILE)
    # An item that errored in setup (its dataset or weights) never reached the compiler.
    if not row.compile_status and outcome in _FAILING:
        row.compile_status = outcome
    # Where the cold figure comes from; why the cached one is missing.
    notes = [f"cold: {rec['cold_measured']}" if rec.get("cold_measured") else "",
             rec.get("cached_note") or ""]
    row.compile_times_note = "; ".join(n for n in notes if n) or row.compile_times_note


def _merge_perf(row: Row, rec: Mapping[str, Any], outcome: str, message: str) -> None:
    row.perf.append(PerfPoint.from_record(rec, outcome, message))
    if row.flops_per_sample is None:
        row.flops_per_sample = row.perf[-1].flops_per_sample


def _finish(row: Row) -> None:
    if row.primary:
        row.metric = row.metrics.get(row.primary)
        row.reference = row.reference_metrics.get(row.primary)
    if row.seeded_weights is None and row.weights:
        row.seeded_weights = row.weights.startswith("seeded")
    if row.coverage is None and row.nodes_total:
        row.coverage = (row.nodes_native or 0) / row.nodes_total
    row.diff = worst_diff(row.outputs.values())
    row.perf.sort(key=lambda p: (p.scenario, p.batch_size if p.batch_size is not None else -1))
    row.audits.sort(key=lambda a: a.audit)
    row.suites = {s: row.suites[s] for s in _suite_order(row.suites)}
    outcomes = {res.outcome for res in row.suites.values()}
    row.status = ("failed" if outcomes & _FAILING else "xfailed" if "xfailed" in outcomes else
                  "passed" if "passed" in outcomes else "skipped")


def _suite_order(suites: Mapping[str, SuiteResult]) -> list[str]:
    return [s for s in SUITES if s in suites] + sorted(s for s in suites if s not in SUITES)


def worst_diff(outputs: Iterable[Mapping[str, float]]) -> dict[str, float]:
    """The worst value of each DiffStats key over all outputs (NaN anywhere stays NaN),
    and the non-finite counts summed."""
    out: dict[str, float] = {}
    per_key: dict[str, list[float]] = {}
    for stats in outputs:
        for key in DIFF_KEYS + NONFINITE_KEYS:
            if stats.get(key) is not None:
                per_key.setdefault(key, []).append(float(stats[key]))
    for key, values in per_key.items():
        if key in NONFINITE_KEYS:
            out[key] = sum(values)
            continue
        # max()/min() give an order-dependent answer with NaN; a NaN output is the worst.
        if any(math.isnan(v) for v in values):
            out[key] = math.nan
        else:
            out[key] = min(values) if key in LOWER_IS_WORSE else max(values)
    return out


def _numbers(mapping: Any) -> dict[str, float]:
    if not isinstance(mapping, Mapping):
        return {}
    return {str(k): float(v) for k, v in mapping.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool)}


def fmt_num(value: float | None, digits: int = 4) -> str:
    """A short human number: '-' for missing, 'NaN'/'inf' spelled out, k/M/G above 10^4."""
    if value is None:
        return "-"
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    mag = abs(value)
    # k starts at 10^4 because '1234' is as short as '1.2k' and exact.
    for threshold, scale, suffix in ((1e15, 1e15, "P"), (1e12, 1e12, "T"), (1e9, 1e9, "G"),
                                     (1e6, 1e6, "M"), (1e4, 1e3, "k")):
        if mag >= threshold:
            scaled = value / scale
            # One digit fewer than asked reads better ('2.4M'), but never drop integer digits.
            sig = max(digits - 1, len(str(int(abs(scaled)))))
            return f"{scaled:.{sig}g}{suffix}"
    if mag and (mag < 1e-3):
        return f"{value:.{max(digits - 2, 1)}e}"
    if mag >= 10 ** digits:
        # '%g' would switch to '1e+03' here; below 10^4 a plain integer is shorter.
        return f"{value:.0f}"
    return f"{value:.{digits}g}"


def fmt_bytes(value: int | None) -> str:
    if value is None:
        return "-"
    if value < 1024:
        return f"{value} B"
    size = value / 1024
    for unit in ("KiB", "MiB"):
        if size < 1024:
            return f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"
