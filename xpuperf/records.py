"""Result records: what one item measured, as plain JSON-able dicts.

Items attach their record with ``record_property(RECORD_KEY, record)`` so that it
travels in the test report, from pytest-xdist workers too, to the controller,
which adds the outcome and writes the reports. The plugin also attaches the
item's identity (ITEM_KEY) at collection, so an item that failed before
recording anything still has a row.

Every record has these keys::

    suite        "metric" | "numerics" | "performance" | "compile" | "audit" | "generation"
                 (and "op", "micro": records of no combination, below)
    combination  "bert-torch-squad-fp16"
    model, dataset, precision, hardware, framework, domain, family
    weights      "seeded (seed 0)" or the weights file read
    outcome      "passed" | "failed" | "skipped" | "error"    (added by the controller)
    message      the failure or skip reason, "" when passed      (added by the controller)
    expected_failure, expected_reason   an expected failure (outcome "xfailed") and its
                 reason as the backend's expected_failures.txt gives it (added by the controller)

and, by suite:

    metric       metrics {name: value}, reference_metrics {name: value}, primary,
                 drop (reference - backend, of the primary metric), max_drop,
                 seeded_weights (bool), samples, data_source ("real"|"sample"|"generated"
                 |"golden"), note (what a reader must know, e.g. that the weights are seeded)
    numerics     data_source (as metric's), outputs {output name:
                 xpuperf.conformance.numerics.DiffStats.as_dict(), i.e. the statistics
                 of NUMERICS below, nan, inf, reference_nonfinite, size},
                 tolerance {key: value},
                 histogram {"edges": [...], "counts": [...]} of |diff| over all outputs
    performance  every figure of PERFORMANCE (the table below: where the record holds it,
                 its result-file label, unit and page column), from the engine's
                 LoadResult.as_record() (scenario as in the item id: offline, single_stream,
                 multi_stream, server, multi_client; latency_ms also holds max), the
                 worker's figures beside it (xpuperf.worker.host.throughput) and the graph's
                 (xpuperf.measure.flops; flops_error when it could not be counted); beside
                 them: queries, clients, latency_bound_ms, rss_method
                 ("vmhwm"|"sampled"|"lifetime"), device_resident's queries, latency_ms
                 and device_time_source (or {skipped: why}), energy's joules and seconds
                 (or {unavailable: why}, never an estimate), precision_used,
                 distinct_batches, runs (an invalid server run is run again), timed_by, and
                 with --driver mlperf: mlperf {LoadGen's summary, qps_ratio} (or
                 {skipped: why})
    compile      status, precision_used, seconds_cold (a compile that found no cache
                 entry), seconds_cached (a load from the backend's compile cache),
                 cold_measured ("this session", "an earlier session (<when>)" or why
                 not measured), cached_note (why seconds_cached is missing), cached
                 (the model in use was loaded, not compiled), nodes_total,
                 nodes_native, coverage, fallback_ops [...], artifact_bytes, error,
                 details, flops_per_sample and bytes_per_sample at batch 1 (when it
                 compiled); COMPILE below is what the reports read of them
    audit        audit ("accuracy"|"caching"|"seed"), batch_size, and the verdict's
                 figures (xpuperf.measure.audits): accuracy: logged_queries, mismatched_queries,
                 max_relative_diff, rtol; caching: basis ("cpu"|"wall"),
                 median_repeated_ms, median_distinct_ms, speedup, max_speedup, rounds,
                 rounds_over_bound, rounds_needed, attempts; seed: basis,
                 median_default_ms, median_alternate_ms, change, max_change, rounds,
                 rounds_slower, rounds_faster, rounds_needed, attempts

    generation   (suites/llm; combination "<workload>-<precision>", dataset "prompts")
                 a scenario item: scenario, concurrency, prompt_tokens, output_tokens,
                 requests, generated_tokens, wall_s, ttft_ms / tpot_ms / itl_ms / e2e_ms
                 {p50, p90, p99, mean} (against a server, TTFT and e2e from each request's
                 sending, and client_delay_ms {p50, ...} from its submission to its
                 sending; null for in-tree engines), output_tokens_per_s, requests_per_s, goodput,
                 valid, ttft_bound_ms, tpot_bound_ms, energy (as performance's, per
                 output token and request: j_per_output_token, j_per_request),
                 turns, and of conversations (turns > 1) ttft_ms_by_turn [{p50, ...}];
                 offline and single_stream:
                 weight_bytes, params, kv_bytes_per_token, decode_bytes_per_step,
                 memory_bandwidth(_source), decode_bandwidth_utilization, and at
                 concurrency 1 prefill_flops, peak_flops(_source), prefill_mfu; server:
                 target_rate, rate_source, runs, max_valid_rate, search [{rate, valid,
                 ttft_p99_ms, tpot_p99_ms, output_tokens_per_s}], search_budget_s.
                 The accuracy item: cosine, max_abs, greedy_match, perplexity,
                 reference_perplexity, perplexity_ratio, greedy_tokens, text_tokens,
                 tokens, reference_tokens, tolerance

Micro-benchmark records (suites/micro_perf; xpuperf.microperf.host and .xccl)
carry suite "micro", case, op, group, precision, hardware, workload (its file)
and args; an op: device, implementation, latency(us), mem_bw(GB/s),
calc_flops_power(tflops), flops, bytes, arithmetic_intensity, timing {calls,
latency_us {p10, p50, p90, p99, mean, min}, clock, rotated_sets,
rotation_bytes, llc_bytes, cold_cache}, share_of_peak {measured, datasheet:
{share, bound, source, why}}, correctness (xpuperf.microperf.correctness),
passed, why; a collective: world_size, dist_backend, size_bytes, latency(us),
algo_bw(GB/s), bus_bw(GB/s), calls, clock, wrong_elements, passed.

With --baseline or A/B, performance records carry baseline {source, qps (the
baseline's), the speed verdict (xpuperf.gate.verdict.Verdict's fields: verdict,
change_pct, low_pct, high_pct, threshold_pct, confidence, method, baseline_n,
candidate_n, why), runs, qps_regression_pct, max_regression_pct; stored: p99_ms,
unsteady_runs; A/B: ab_baseline_qps, ab_candidate_qps}; metric records the
stored baseline holds carry baseline {source, metric, drop, max_drop}.
"""
from __future__ import annotations

import math
import numbers
import re
from dataclasses import dataclass, field, make_dataclass
from typing import Any, Mapping

from xpuperf.zoo import Combination

# Terminal escapes a backend's output may carry (CSI: colours, cursor moves; OSC:
# titles, links), dropped whole; then any other control character but newline
# and tab, shown as \xNN (a NUL or a lone ESC says something went wrong).
_ESCAPES = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?")
_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
RECORD_KEY = "xpuperf"
ITEM_KEY = "xpuperf_item"
SUITES = ("compile", "metric", "numerics", "performance")
# Suites whose records are not of a zoo combination: onnx's op cases and the
# micro-benchmarks, each with a report of its own.
APART = ("op", "micro")


def identity(suite: str, combo: Combination, hardware: str, **extra: Any) -> dict[str, Any]:
    """The keys every record of ``combo`` carries."""
    return {
        "suite": suite,
        "combination": combo.id,
        "model": combo.model.name,
        "dataset": combo.dataset.name,
        "precision": combo.precision,
        "hardware": hardware,
        "framework": combo.model.framework,
        "domain": combo.model.domain,
        "family": combo.model.family,
        **extra,
    }


def jsonable(value: Any) -> Any:
    """``value`` with non-finite floats turned into None: JSON has no NaN, and a
    NaN must not read as a number in a report (the message says what happened)."""
    # numpy scalars pass isinstance(float) or register as numbers, but pytest-xdist's
    # wire format (execnet) takes only plain Python types: convert them all.
    if isinstance(value, (bool, str)) or value is None:
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    return value


def printable(value: Any) -> Any:
    """``value`` with every string in it (keys too) safe to print and to put in a
    page: a backend's terminal escapes and control characters would otherwise
    recolour or rewrite the terminal and land as ESC and NUL bytes in
    report.html and the JSON files."""
    if isinstance(value, str):
        text = _ESCAPES.sub("", value.replace("\r\n", "\n"))
        return _CONTROLS.sub(lambda m: f"\\x{ord(m.group()):02x}", text)
    if isinstance(value, dict):
        return {printable(k): printable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [printable(v) for v in value]
    if isinstance(value, tuple):
        return tuple(printable(v) for v in value)
    return value


# The figures' tables: what each measured figure is called in a record, in the
# typed record the reports read (PerfPoint, and summary.Row for COMPILE and
# ACCURACY), in ByteMLPerf's result file, and on the page. Every step after the
# measurement reads them (xpuperf.report.summary, .bytemlperf's writer and reader,
# the pages' figure tables, xpuperf.gate's baseline), so a new figure is a row
# here and the code that measures it.
@dataclass(frozen=True)
class Field:
    """One figure of a record kind."""

    attr: str  # the typed record's attribute
    # Its path in the record, ("latency_ms", "p99") for the p99; () for a figure the
    # code beside its table composes (summary's merge) rather than reads.
    key: tuple[str, ...]
    label: str | None  # ByteMLPerf's key in the result file; None: not written there
    unit: str = ""
    fmt: str = "num"  # how the page shows it: xpuperf.report.FORMATS' names
    type: type = float  # float, int, str, bool, list (of ``item``) or dict (a JSON object)
    # "always": written to the result file missing or not (ByteMLPerf's core
    # figures); "measured": only where measured (a scenario's or a device's own).
    written: str = "always"
    column: str | None = None  # its heading in a combination's figure table; None: no column
    note: str = ""  # the heading's tooltip: what a reader must know of the figure
    item: type = float  # a list's items: float or str
    # The compare page sets this figure of a run against the baseline's at the
    # baseline's load (xpuperf.report.compare: a latency, lower is better).
    compared: bool = False

    def __post_init__(self) -> None:
        if self.type not in (float, int, str, bool, list, dict):
            raise ValueError(f"field {self.attr}: type {self.type!r} is none of float, int, "
                             "str, bool, list, dict")
        if self.item not in (float, str):
            raise ValueError(f"field {self.attr}: item {self.item!r}; a list holds float or str")
        if self.written not in ("always", "measured"):
            raise ValueError(f"field {self.attr}: written={self.written!r}; say 'always' "
                             "(ByteMLPerf's core figures) or 'measured'")

    @property
    def annotation(self) -> Any:
        """The typed record's annotation of this figure."""
        return {str: str, list: tuple[self.item, ...], dict: dict[str, Any]}.get(
            self.type, self.type | None)

    @property
    def empty(self) -> Any:
        """The typed record's value when the record lacks it."""
        return {str: "", list: (), dict: {}}.get(self.type)

    def default(self) -> Any:
        """The typed record's dataclass default: ``empty``, a fresh one where mutable."""
        return field(default_factory=dict) if self.type is dict else field(default=self.empty)

    def read(self, rec: Mapping[str, Any]) -> Any:
        """This figure of record ``rec`` as its type, or ``empty`` when missing or
        of another type (a partial record of a failed item)."""
        if not self.key:
            return self.empty
        value: Any = rec
        for part in self.key:
            value = value.get(part) if isinstance(value, Mapping) else None
        return self.typed(value)

    def typed(self, value: Any) -> Any:
        """``value`` as this figure's type, or ``empty`` when it is none; a result
        file's "NaN"/"Infinity" spellings of non-finite numbers read back."""
        if self.type is float:
            if isinstance(value, str):
                return _NONFINITE.get(value)
            return None if isinstance(value, bool) or not isinstance(value, (int, float)) \
                else float(value)
        if self.type is int:
            return value if isinstance(value, int) and not isinstance(value, bool) else None
        if self.type is bool:
            return value if isinstance(value, bool) else None
        if self.type is list:
            if not isinstance(value, list):
                return ()
            if self.item is str:
                return tuple(str(v) for v in value if isinstance(v, str))
            return tuple(float(v) for v in value if isinstance(v, (int, float))
                         and not isinstance(v, bool))
        if self.type is dict:
            return dict(value) if isinstance(value, Mapping) else {}
        return str(value) if value else ""


def measured(value: Any) -> bool:
    """Whether a typed figure holds a measurement (not its field's ``empty``)."""
    return value not in (None, "", (), {})


def field_of(table: tuple[Field, ...], attr: str) -> Field:
    """The field of ``table`` whose attribute is ``attr`` (the code beside a table
    that handles one figure specially takes its label from here)."""
    for f in table:
        if f.attr == attr:
            return f
    raise KeyError(f"no field {attr!r} in the table")


def result_entry(obj: Any, table: tuple[Field, ...]) -> dict[str, Any]:
    """``obj``'s figures of ``table`` under their result-file labels, in the table's
    order: every "always" one, the "measured" ones where measured."""
    entry: dict[str, Any] = {}
    for f in table:
        value = getattr(obj, f.attr)
        if f.label is not None and (f.written == "always" or measured(value)):
            entry[f.label] = {list: list, dict: dict}.get(f.type, lambda v: v)(value)
    return entry


def read_entry(entry: Mapping[str, Any], table: tuple[Field, ...]) -> dict[str, Any]:
    """The figures of ``table`` that ``result_entry`` wrote into ``entry``, by
    attribute, each as its type (``empty`` where the entry lacks it)."""
    return {f.attr: f.typed(entry.get(f.label)) for f in table if f.label is not None}


_NONFINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}

# The graph's FLOPs per sample: a compile record's (batch 1) and a performance
# record's alike, one figure under one label in both tables.
FLOPS_PER_SAMPLE = Field("flops_per_sample", ("flops_per_sample",), "FLOPs per Sample")

# A performance item (xpuperf.measure.loadgen's LoadResult.as_record() and the
# worker's figures beside it), in ByteMLPerf's order. Latencies in ms.
PERFORMANCE: tuple[Field, ...] = (
    Field("batch_size", ("batch_size",), "BS", type=int),
    Field("scenario", ("scenario",), "Scenario", type=str),
    Field("qps", ("qps",), "QPS", "samples/s", column="QPS"),
    Field("mean", ("latency_ms", "mean"), "AVG Latency", "ms", column="mean ms"),
    Field("p50", ("latency_ms", "p50"), "P50 Latency", "ms", column="p50 ms",
          compared=True),
    Field("p90", ("latency_ms", "p90"), "P90 Latency", "ms", column="p90 ms",
          compared=True),
    # No page column: between p90 and p99, which the page shows; the result file has it.
    Field("p95", ("latency_ms", "p95"), "P95 Latency", "ms",
          compared=True),
    Field("p99", ("latency_ms", "p99"), "P99 Latency", "ms", column="p99 ms",
          compared=True),
    Field("p999", ("latency_ms", "p99.9"), "P99.9 Latency", "ms"),
    Field("samples", ("samples",), "Samples", type=int, fmt="int", column="samples"),
    Field("wall_s", ("wall_s",), None, "s", fmt="num3", column="wall s"),
    Field("mfu", ("mfu",), "MFU", fmt="pct", column="MFU",
          note="achieved FLOP/s over the peak FLOP/s below"),
    Field("peak_flops", ("peak_flops",), "Peak FLOPS", "FLOP/s"),
    Field("peak_flops_source", ("peak_flops_source",), "Peak FLOPS Source", type=str),
    Field("peak_rss_mb", ("peak_rss_mb",), "Peak RSS MB", "MiB", fmt="num4",
          column="peak RSS MiB"),
    Field("resident_qps", ("device_resident", "qps"), "Device Resident QPS", "samples/s",
          column="resident QPS", note="offline QPS over inputs already on the device, "
          "outputs left there (QPS: host arrays in and out)"),
    Field("device_p50", ("device_resident", "device_ms", "p50"), "Device P50 Latency", "ms",
          fmt="num3", column="device p50 ms", note="a query's device time, by the device's "
          "own clock"),
    Field("device_p90", ("device_resident", "device_ms", "p90"), "Device P90 Latency", "ms",
          fmt="num3", column="device p90 ms", note="a query's device time, by the device's "
          "own clock"),
    Field("h2d_bytes_per_s", ("device_resident", "h2d_bytes_per_s"), "H2D Bytes per s", "B/s",
          fmt="gbps", column="H2D GB/s", note="host-to-device copy rate of one batch"),
    Field("d2h_bytes_per_s", ("device_resident", "d2h_bytes_per_s"), "D2H Bytes per s", "B/s",
          fmt="gbps", column="D2H GB/s", note="device-to-host copy rate of one batch"),
    Field("device_memory_peak_mb", ("device_memory_peak_mb",), "Device Memory Peak MB", "MiB",
          fmt="num4", column="device MiB", note="the device's peak allocated memory over the item"),
    FLOPS_PER_SAMPLE,
    Field("bytes_per_sample", ("bytes_per_sample",), "Bytes per Sample", fmt="num3",
          column="bytes / sample"),
    # Beside ByteMLPerf's figures: a scenario's own, where it has them.
    Field("window_qps", ("window_qps",), "Window QPS", type=list, written="measured"),
    Field("valid", ("valid",), "Valid", type=bool, written="measured"),
    Field("stable", ("stable",), "Steady", type=bool, written="measured"),
    Field("spread", ("spread",), "QPS Spread", written="measured"),
    Field("max_spread", ("max_spread",), "Max QPS Spread", written="measured"),
    Field("target_qps", ("target_qps",), "Target QPS", "samples/s", written="measured"),
    Field("mlperf_qps", ("mlperf", "qps"), "LoadGen QPS", "samples/s", written="measured",
          column="LoadGen QPS", note="the same item under mlcommons-loadgen"),
    Field("resident_skipped", ("device_resident", "skipped"), "Device Resident Skipped",
          type=str, written="measured"),
    Field("avg_watts", ("energy", "avg_watts"), "Avg Watts", "W", fmt="num3", written="measured",
          column="W", note="by the device's own energy counter over the measured run"),
    Field("j_per_query", ("energy", "j_per_query"), "J per Query", "J", written="measured"),
    Field("j_per_sample", ("energy", "j_per_sample"), "J per Sample", "J", fmt="num3",
          written="measured", column="J / sample",
          note="by the device's own energy counter over the measured run"),
    Field("energy_method", ("energy", "method"), "Energy Method", type=str, written="measured"),
    Field("energy_unavailable", ("energy", "unavailable"), "Energy Unavailable", type=str,
          written="measured"),
    Field("baseline_qps", ("baseline", "qps"), None, "samples/s", column="baseline QPS",
          note="--baseline's QPS for this item"),
    Field("qps_regression_pct", ("baseline", "qps_regression_pct"), None, "%", fmt="num3",
          column="regression %", note="this run's QPS below the baseline's, in percent"),
)

# A compile record's figures, in ByteMLPerf's "Graph Compile" order; the attributes
# are xpuperf.report.summary.Row's. Beside the table, summary composes
# compile_times_note and falls back to the item's outcome for compile_status, and
# the result file writes coverage (a fraction) in percent (xpuperf.report.bytemlperf).
COMPILE: tuple[Field, ...] = (
    Field("compile_seconds", ("seconds_cold",), "Compile Duration", "s"),
    Field("compile_seconds_cached", ("seconds_cached",), "Cached Compile Duration", "s"),
    Field("compile_times_note", (), "Compile Duration Note", type=str),
    Field("precision_used", ("precision_used",), "Compile Precision", type=str),
    # The share of the graph's nodes run natively, a fraction (the result file's in percent).
    Field("coverage", ("coverage",), "Subgraph Coverage"),
    Field("nodes_total", ("nodes_total",), "Nodes Total", type=int),
    Field("nodes_native", ("nodes_native",), "Nodes Native", type=int),
    Field("fallback_ops", ("fallback_ops",), "Fallback Ops", type=list, item=str),
    Field("artifact_bytes", ("artifact_bytes",), "Artifact Bytes", "B", type=int),
    Field("compile_cached", ("cached",), "Cached", type=bool),
    FLOPS_PER_SAMPLE,
    # What the backend's compile report says beyond the counts (its device and mode,
    # fp8 layers, int8 scheme, ...).
    Field("compile_details", ("details",), "Details", type=dict),
    Field("compile_status", ("status",), "Status", type=str),
)

# The accuracy figures of the metric and numerics records beside the task metrics
# (whose labels are the metrics' names) and NUMERICS' statistics, in ByteMLPerf's
# "Accuracy" order; the attributes are summary.Row's. The result file names the
# primary metric as it names the metrics (bytemlperf.metric_name); summary keeps
# a histogram only of a readable shape, and the weights of every suite's records.
ACCURACY: tuple[Field, ...] = (
    Field("primary", ("primary",), "Primary Metric", type=str, written="measured"),
    Field("drop", ("drop",), "Drop"),  # reference - backend, of the primary metric
    Field("max_drop", ("max_drop",), "Max Drop"),
    # Every record's identity holds it: summary keeps the first a record gave.
    Field("weights", (), "Weights", type=str),
    Field("seeded_weights", ("seeded_weights",), "Seeded Weights", type=bool),
    Field("data_source", ("data_source",), "Data Source", type=str),
    Field("metric_note", ("note",), None, type=str),
    Field("metric_samples", ("samples",), None, type=int),
    Field("histogram", (), "Diff Histogram", type=dict, written="measured"),
)

# A numerics record's per-output statistics (xpuperf.conformance.numerics.DiffStats,
# under "outputs"; key is the statistic's name there): the reports show the worst
# output's, in this order; the result file writes them under these labels.
NUMERICS: tuple[Field, ...] = (
    Field("max_abs", ("max_abs",), "Max Diff"),
    Field("mean_abs", ("mean_abs",), "Mean Diff"),
    Field("std_abs", ("std_abs",), "Std Diff"),
    Field("max_rel", ("max_rel",), "Max Rel-Diff"),
    Field("mean_rel", ("mean_rel",), "Mean Rel-Diff"),
    Field("cosine", ("cosine",), "Cosine"),
)

# Where a combination's items ran (the fixtures' record: its pytest process's host
# or its Ray node's, and the --devices index); the attributes are summary.Row's,
# a later record's replacing an earlier's.
WHERE: tuple[Field, ...] = (
    Field("host", ("host",), "Host", type=str, written="measured"),
    Field("device_index", ("device_index",), "Device Index", type=str, written="measured"),
)

# Where the session ran, as MLPerf's system description says it: the report info's
# (xpuperf.report.system), written into every result file beside WHERE's.
SYSTEM: tuple[Field, ...] = (
    Field("nodes", ("nodes",), "Nodes", type=int, written="measured"),
    Field("accelerators_per_node", ("accelerators_per_node",), "Accelerators per Node",
          type=int, written="measured"),
)


class _PerfFigures:
    """What a PerfPoint computes from its figures."""

    qps: float | None
    avg_watts: float | None

    @property
    def qps_per_watt(self) -> float | None:
        """Samples per second per measured watt (samples per joule), where measured."""
        return self.qps / self.avg_watts if self.qps and self.avg_watts else None

    @classmethod
    def from_record(cls, rec: Mapping[str, Any], outcome: str, message: str = "") -> "PerfPoint":
        """The typed form of a performance record (the dict above; pytest-benchmark's
        extra_info holds the same)."""
        return cls(outcome=outcome, message=message, **{f.attr: f.read(rec) for f in PERFORMANCE})

    @classmethod
    def from_result(cls, entry: Mapping[str, Any]) -> "PerfPoint":
        """The point that ``as_result`` wrote ``entry`` from, as far as it holds it."""
        return cls(outcome=str(entry.get("Status", "")), message=str(entry.get("Message", "")),
                   **read_entry(entry, PERFORMANCE))

    def as_result(self) -> dict[str, Any]:
        """This point as an entry of a ByteMLPerf result file's "Performance" list:
        its figures under their labels, then its status and message."""
        entry = result_entry(self, PERFORMANCE)
        entry["Status"] = self.outcome
        if self.message:
            entry["Message"] = self.message
        return entry


# One performance item: a batch size under a scenario, its outcome and every
# figure of PERFORMANCE as an attribute (None or empty where not measured).
PerfPoint = make_dataclass(
    "PerfPoint", [("outcome", str), ("message", str, field(default=""))]
    + [(f.attr, f.annotation, f.default()) for f in PERFORMANCE],
    bases=(_PerfFigures,))
PerfPoint.__module__ = __name__
