"""Run the engine's SUT under mlcommons-loadgen, for figures to set beside ours.

The same ``issue(query_index)`` callable that ``xpuperf.measure.loadgen`` drives runs
under MLPerf LoadGen's Python binding (``pip install 'xpuperf[mlperf]'``), and
LoadGen's own summary comes back as an ``MLPerfResult`` whose fields carry the
same names and units as ``LoadResult``, so the two record side by side.

One LoadGen sample is one of our queries (one batch of ``batch_size``): LoadGen
then pays its per-sample bookkeeping once per batch, its cheapest way to drive
the SUT, and its sample rates times ``batch_size`` are samples per second.
Each sample is completed (QuerySamplesComplete) as soon as its batch returns, as
a SUT must for LoadGen's latencies to mean anything.
"""
from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from types import ModuleType
from typing import Any

from xpuperf.extras import require
from xpuperf.measure import loadgen
from xpuperf.measure.loadgen import DEFAULT_SETTINGS, Issue, RunSettings

SCENARIOS = (loadgen.OFFLINE, loadgen.SINGLE_STREAM, loadgen.SERVER)
_LOADGEN_SCENARIO = {loadgen.OFFLINE: "Offline", loadgen.SINGLE_STREAM: "SingleStream",
                     loadgen.SERVER: "Server"}
# LoadGen sizes an offline or single-stream run from the expected pace and marks
# it invalid when the SUT outruns that (too few queries for the minimum
# duration), so the pilot's pace is overstated by this factor.
_PACE_MARGIN = 1.25
# The pilot run that measures the pace under LoadGen, when the caller gives none.
_PILOT_MS = 50
# Our percentile keys and the LoadGen detail-log keys they are read from.
_PERCENTILE_KEYS = {"p50": "50.00", "p90": "90.00", "p99": "99.00", "p99.9": "99.90"}


@dataclass(frozen=True)
class MLPerfResult(loadgen.RunFigures):
    """LoadGen's figures for one run, named and scaled as in ``LoadResult``.

    ``valid`` is LoadGen's own verdict (minimum duration and query count met, and
    for the server the latency bound), ``invalid_reason`` its explanation.
    ``wall_ns`` is derived as queries over LoadGen's query rate (LoadGen logs no
    duration). ``latency_ms`` holds p50, p90, p99, p99.9, mean and max.
    """

    valid: bool
    invalid_reason: str
    target_qps: float | None = None
    latency_bound_ms: float | None = None

    def as_record(self) -> dict[str, Any]:
        rec = {**super().as_record(), "valid": self.valid, "invalid_reason": self.invalid_reason}
        if self.scenario == loadgen.SERVER:
            rec.update(target_qps=self.target_qps, latency_bound_ms=self.latency_bound_ms)
        return rec


def import_loadgen() -> ModuleType:
    """The ``mlperf_loadgen`` module, or an ImportError naming the extra to install."""
    return require("mlperf_loadgen", "the MLPerf driver (MLPerf LoadGen's Python binding)")


def run_mlperf(issue: Issue, scenario: str, batch_size: int, sample_count: int,
               settings: RunSettings = DEFAULT_SETTINGS, *, expected_qps: float | None = None,
               target_qps: float | None = None, latency_bound_ms: float | None = None,
               log_dir: str | PathLike[str] | None = None) -> MLPerfResult:
    """Run ``issue`` under LoadGen's ``scenario`` and return LoadGen's summary.

    ``sample_count`` is how many distinct inputs the caller rotates through (the
    size of LoadGen's sample library); LoadGen passes indices below it.
    ``settings`` gives the minimum duration and query count; its warm-up queries
    run before LoadGen starts (LoadGen has none of its own). ``expected_qps``
    (samples/s) sizes LoadGen's offline and single-stream runs; left out, a short
    pilot run under LoadGen measures it (LoadGen's own cost can dominate a fast
    SUT's, so the SUT alone would overstate it). The server needs ``target_qps``
    (samples/s) and ``latency_bound_ms``. LoadGen's logs go to ``log_dir``, or to
    a temporary folder removed after.
    """
    if scenario not in SCENARIOS:
        raise ValueError(f"scenario must be one of {SCENARIOS}, got {scenario!r}")
    if scenario == loadgen.SERVER and (target_qps is None or latency_bound_ms is None):
        raise ValueError("the server scenario needs target_qps and latency_bound_ms")
    lg = import_loadgen()

    warmup = max(settings.warmup_queries, 1)  # at least one query, to time it
    t = time.perf_counter_ns()
    for k in range(warmup):
        issue(k)
    per_query_ns = max((time.perf_counter_ns() - t) // warmup, 1)

    test = lg.TestSettings()
    test.scenario = getattr(lg.TestScenario, _LOADGEN_SCENARIO[scenario])
    test.mode = lg.TestMode.PerformanceOnly
    test.performance_sample_count_override = sample_count
    if scenario == loadgen.SERVER:
        test.server_target_qps = target_qps / batch_size
        test.server_target_latency_ns = int(latency_bound_ms * 1e6)
    else:
        if expected_qps is None:
            test.min_duration_ms = _PILOT_MS
            test.min_query_count = 1
            _pace(test, scenario, 1e9 / per_query_ns)
            pilot = _summary(_start(lg, _issue_query(lg, issue), test, sample_count, None),
                             scenario, batch_size, None, None)
            expected_qps = pilot.qps * _PACE_MARGIN
        _pace(test, scenario, expected_qps / batch_size)
    test.min_duration_ms = int(settings.min_duration_s * 1000)
    test.min_query_count = settings.min_queries
    logged = _start(lg, _issue_query(lg, issue), test, sample_count, log_dir)
    return _summary(logged, scenario, batch_size, target_qps, latency_bound_ms)


def _issue_query(lg: ModuleType, issue: Issue) -> Callable[[list[int], list[int]], None]:
    """LoadGen's fast issue callback (sample ids, sample indices) around ``issue``."""
    complete, response = lg.QuerySamplesComplete, lg.QuerySampleResponse

    def issue_query(ids: list[int], indices: list[int]) -> None:
        for qid, index in zip(ids, indices):
            issue(index)
            complete([response(qid, 0, 0)])

    return issue_query


def _pace(test: Any, scenario: str, queries_per_s: float) -> None:
    """Tell LoadGen the pace it sizes an offline or single-stream run from."""
    if scenario == loadgen.OFFLINE:
        test.offline_expected_qps = queries_per_s
    else:
        test.single_stream_expected_latency_ns = max(1, int(1e9 / queries_per_s))


def _start(lg: ModuleType, issue_query: Callable[[list[int], list[int]], None], test: Any,
           sample_count: int, log_dir: str | PathLike[str] | None) -> dict[str, Any]:
    """One LoadGen test; returns its detail log's values."""

    def flush_queries() -> None:
        """Nothing is buffered: every sample completes inside issue_query."""

    def keep_samples(indices: list[int]) -> None:
        """The caller built every input before the run: nothing to load or unload."""

    with tempfile.TemporaryDirectory(prefix="xpuperf-mlperf-") as tmp:
        out = Path(log_dir) if log_dir is not None else Path(tmp)
        out.mkdir(parents=True, exist_ok=True)
        log = lg.LogSettings()
        log.log_output.outdir = str(out)
        log.log_output.copy_summary_to_stdout = False
        log.enable_trace = False
        sut = lg.ConstructFastSUT(issue_query, flush_queries)
        qsl = lg.ConstructQSL(sample_count, sample_count, keep_samples, keep_samples)
        try:
            lg.StartTestWithLogSettings(sut, qsl, test, log)
        finally:
            lg.DestroyQSL(qsl)
            lg.DestroySUT(sut)
        return read_detail_log(out / "mlperf_log_detail.txt")


def read_detail_log(path: str | PathLike[str]) -> dict[str, Any]:
    """{key: value} of the ``:::MLLOG {json}`` lines of a LoadGen detail log."""
    values: dict[str, Any] = {}
    for line in Path(path).read_text().splitlines():
        if line.startswith(":::MLLOG "):
            entry = json.loads(line[len(":::MLLOG "):])
            values[entry["key"]] = entry["value"]
    return values


def _summary(logged: dict[str, Any], scenario: str, batch_size: int,
             target_qps: float | None, latency_bound_ms: float | None) -> MLPerfResult:
    if scenario == loadgen.OFFLINE:
        # Offline is one query of many samples: our queries are its samples.
        queries = int(logged["generated_samples_per_query"]) * int(logged["result_query_count"])
        per_s = float(logged["result_samples_per_second"])
    elif scenario == loadgen.SINGLE_STREAM:
        queries = int(logged["result_query_count"])
        # Queries over the run's duration; the other figure LoadGen logs,
        # "without loadgen overhead", is 1 / mean latency.
        per_s = float(logged["result_qps_with_loadgen_overhead"])
    else:
        queries = int(logged["result_query_count"])
        per_s = float(logged["result_completed_samples_per_sec"])
    latency_ms = {ours: float(logged[f"result_{theirs}_percentile_latency_ns"]) / 1e6
                  for ours, theirs in _PERCENTILE_KEYS.items()}
    latency_ms["mean"] = float(logged["result_mean_latency_ns"]) / 1e6
    latency_ms["max"] = float(logged["result_max_latency_ns"]) / 1e6
    return MLPerfResult(
        scenario=scenario, batch_size=batch_size, queries=queries,
        samples=queries * batch_size, wall_ns=round(queries / per_s * 1e9) if per_s else 0,
        qps=per_s * batch_size, latency_ms=latency_ms,
        valid=logged.get("result_validity") == "VALID",
        invalid_reason=_invalid_reason(logged),
        target_qps=target_qps, latency_bound_ms=latency_bound_ms)


def _invalid_reason(logged: dict[str, Any]) -> str:
    """Why LoadGen judged the run invalid, "" when it did not. LoadGen's own
    reason is often empty (for a failed early-stopping test, say), so the failed
    criteria are named too."""
    reasons = [str(logged.get("result_invalid_reason", "")).strip()]
    if logged.get("result_min_duration_met") is False:
        reasons.append("minimum duration not met")
    if logged.get("result_min_queries_met") is False:
        reasons.append("minimum query count not met")
    if logged.get("result_perf_constraints_met") is False:
        reasons.append("latency bound not met")
    if logged.get("early_stopping_met") is False:
        reasons.append("early stopping: " + " ".join(str(logged.get("early_stopping_result", "")).split()))
    return "; ".join(r for r in reasons if r)
