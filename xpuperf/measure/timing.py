"""Performance items' measurement: a zoo scenario run by the engine, and its
per-query latencies handed to pytest-benchmark.

The engine (xpuperf.measure.loadgen) owns the loop for every scenario, offline
included: only it can issue Poisson arrivals or concurrent clients, and one
measurement then feeds the record, benchmark.extra_info and pytest-benchmark's
statistics alike. pytest-benchmark sees one query as one round, so its min,
mean, median, IQR and OPS describe the query latency of that scenario and
--benchmark-compare / --benchmark-compare-fail compare it run against run, as
its users expect of a per-call timing.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any, Mapping

import numpy as np

from xpuperf.measure import loadgen, mlperf_driver
from xpuperf.measure.loadgen import Issue, LoadResult, RunSettings
from xpuperf.zoo import ScenarioSpec

# An invalid server run is run again, and the item fails only if every run was
# invalid: a SUT too slow for its target fails each time, while one stall of a
# shared machine (which backs up every query behind it) seldom strikes twice. The
# run again has its rate from the offline throughput measured again just before
# it: a host slowed since the offline item (a neighbour's load, pytest-xdist's
# other workers) would otherwise fail, every time, a SUT that meets its bound at
# the share of the throughput it sustains now.
SERVER_RUNS = 2
# zoo.yaml's scenario names (the words of item ids) -> the engine's.
ENGINE_SCENARIO = {"offline": loadgen.OFFLINE, "single_stream": loadgen.SINGLE_STREAM,
                   "multi_stream": loadgen.MULTI_STREAM, "server": loadgen.SERVER,
                   "multi_client": loadgen.MULTI_CLIENT}


def run_settings(perf: Mapping[str, float]) -> RunSettings:
    """The tier's ``perf:`` run control as the engine's settings; what a tier
    leaves out takes these defaults (one second, 10 queries, 1 warm-up)."""
    return RunSettings(min_duration_s=float(perf.get("min_time_s", 1.0)),
                       min_queries=int(perf.get("min_rounds", 10)),
                       warmup_queries=int(perf.get("warmup_rounds", 1)),
                       windows=int(perf.get("windows", 5)),
                       max_spread=float(perf.get("max_spread", 0.10)))


def run_scenario(spec: ScenarioSpec, issue: Issue, batch_size: int, settings: RunSettings,
                 capacity: Callable[[bool], float]) -> tuple[LoadResult, int]:
    """Run ``issue`` under ``spec``'s scenario: (the result, the runs it took).
    ``capacity(again)`` gives the offline throughput (samples/s) at this batch
    size, measured anew where ``again``; only the server asks for it."""
    if spec.name == "offline":
        return loadgen.run_offline(issue, batch_size, settings), 1
    if spec.name == "single_stream":
        return loadgen.run_single_stream(issue, batch_size, settings), 1
    if spec.name == "multi_stream":
        return loadgen.run_multi_stream(issue, batch_size, settings), 1
    if spec.name == "multi_client":
        assert spec.clients is not None  # zoo.py requires it
        return loadgen.run_multi_client(issue, batch_size, spec.clients, settings), 1
    if spec.name == "server":
        assert spec.load is not None and spec.latency_bound_ms is not None  # zoo.py requires them
        for run in range(1, SERVER_RUNS + 1):
            target = spec.load * capacity(run > 1)
            result = loadgen.run_server(issue, batch_size, target, spec.latency_bound_ms, settings,
                                        stop_when_invalid=True)
            if result.valid:
                break
        return result, run
    raise ValueError(f"unknown scenario {spec.name!r}")


def shared_host(workers: int) -> str:
    """What a latency bound's failure adds where ``workers`` pytest-xdist
    workers share this host (xpuperf.worker.devices.xdist_workers): the others'
    load is in its latencies, so that the failure may be theirs (seen: -n 2 on
    two cores, before each worker's backends took a share of them, failed 1 to
    3 of the smoke tier's server items, which pass run alone)."""
    if workers <= 1:
        return ""
    return (f" (timed beside {workers - 1} other pytest-xdist worker(s), which share this "
            "host's CPU, and its device without --devices: run it without -n for the SUT's "
            "latency alone)")


def run_mlperf_beside(spec: ScenarioSpec, issue: Issue, batch_size: int, sample_count: int,
                      settings: RunSettings, ours: LoadResult) -> dict[str, Any]:
    """The same item under mlcommons-loadgen (--driver mlperf): its summary, and
    our QPS over its QPS. The server runs at our target rate and bound; offline
    and single-stream are sized from our throughput."""
    scenario = ENGINE_SCENARIO[spec.name]
    if scenario not in mlperf_driver.SCENARIOS:
        driven = [k for k, v in ENGINE_SCENARIO.items() if v in mlperf_driver.SCENARIOS]
        return {"skipped": f"the mlcommons-loadgen driver runs {', '.join(driven)} only, "
                           f"not {spec.name}"}
    theirs = mlperf_driver.run_mlperf(
        issue, scenario, batch_size, sample_count, settings,
        expected_qps=None if scenario == loadgen.SERVER else ours.qps,
        target_qps=ours.target_qps, latency_bound_ms=spec.latency_bound_ms)
    return {**theirs.as_record(), "scenario": spec.name,
            "qps_ratio": ours.qps / theirs.qps if theirs.qps else None}


class QueryLatencies:
    """pytest-benchmark's timer for the performance items, given through its
    documented ``@pytest.mark.benchmark(timer=...)`` (suites/performance): it reads
    0 before a round and the round's query latency after it, so that each round
    of ``benchmark.pedantic`` measures exactly one latency the engine measured
    (with time.perf_counter_ns, in the worker), bit for bit."""

    __name__ = "loadgen_query_latency"  # pytest-benchmark names the timer in its JSON

    def __init__(self) -> None:
        self.start()

    def start(self) -> None:
        self._pending: float | None = None
        self.rounds = 0  # latencies read: a fixture with another timer reads none

    def round_of(self, seconds: float) -> None:
        """The timed call of one round: the timer's next reading is its latency."""
        self._pending = seconds

    def __call__(self) -> float:
        if self._pending is None:
            return 0.0
        reading, self._pending = self._pending, None
        self.rounds += 1
        return reading


QUERY_LATENCIES = QueryLatencies()


def feed_benchmark(benchmark: Any, latencies_ns: np.ndarray) -> None:
    """Give pytest-benchmark the engine's query latencies as its rounds, through
    its public ``pedantic`` on a test marked ``benchmark(timer=QUERY_LATENCIES)``;
    tests_selftest/test_benchmark_storage.py checks that --benchmark-json then
    holds one round per query. A disabled fixture (--benchmark-disable,
    pytest-xdist) records nothing.
    """
    seconds = [ns / 1e9 for ns in np.asarray(latencies_ns, dtype=np.int64).tolist()]
    if not seconds:
        raise ValueError("the engine measured no query: nothing to give pytest-benchmark")
    replay = iter(seconds)
    QUERY_LATENCIES.start()
    benchmark.pedantic(lambda: QUERY_LATENCIES.round_of(next(replay)), rounds=len(seconds),
                       iterations=1, warmup_rounds=0)
    if not benchmark.disabled and QUERY_LATENCIES.rounds != len(seconds):
        raise RuntimeError("pytest-benchmark timed the replay with another timer: mark the test "
                           "@pytest.mark.benchmark(timer=xpuperf.measure.timing.QUERY_LATENCIES)")
