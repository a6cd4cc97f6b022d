"""The measurement engine (xpuperf.measure.loadgen) on fake SUTs whose cost the test sets.

The fake SUT reads a real, pre-built input for every query (as a backend's
would) and then sleeps for a cost chosen per query index, so each test knows what
the engine should find. Timing asserts use wide margins and structure (counts,
orderings, exact identities) rather than tight figures: the machine is shared.
"""
from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Callable

import numpy as np
import pytest

from xpuperf.measure import loadgen, stats
from xpuperf.measure.loadgen import RunSettings


class FakeSUT:
    """``issue(query_index)``: touches input ``query_index % len(inputs)``, then
    sleeps ``cost(query_index)`` seconds. Records every index and the most
    queries it ever had in flight at once."""

    def __init__(self, cost: float | Callable[[int], float]) -> None:
        self.cost = cost if callable(cost) else (lambda _i, c=cost: c)
        self.inputs = [np.full((4, 16), k, np.float32) for k in range(8)]
        self.seen: list[int] = []
        self.checksum = 0.0
        self.in_flight = 0
        self.max_in_flight = 0
        self.threads: set[int] = set()
        self._lock = threading.Lock()

    def __call__(self, query_index: int) -> None:
        with self._lock:
            self.seen.append(query_index)
            self.threads.add(threading.get_ident())
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        self.checksum += float(self.inputs[query_index % len(self.inputs)][0, 0])
        seconds = self.cost(query_index)
        if seconds:
            time.sleep(seconds)
        with self._lock:
            self.in_flight -= 1


def test_min_duration_and_min_count_are_both_honoured() -> None:
    by_duration = loadgen.run_offline(
        FakeSUT(0.001), 1, RunSettings(min_duration_s=0.15, min_queries=5, warmup_queries=2))
    assert by_duration.wall_s >= 0.15
    assert by_duration.queries > 5  # the duration, not the count, ended it

    sut = FakeSUT(0.001)
    by_count = loadgen.run_offline(sut, 1, RunSettings(min_duration_s=0.01, min_queries=60,
                                                       warmup_queries=2))
    assert by_count.queries == 60  # stops as soon as both are met
    assert by_count.wall_s >= 0.06  # 60 queries of >= 1 ms: the count, not the 0.01 s, ended it
    assert len(sut.seen) == 2 + 60


def test_warmup_is_run_but_not_measured() -> None:
    # A cold start: the first three queries are slow.
    sut = FakeSUT(lambda i: 0.03 if i < 3 else 0.0005)
    result = loadgen.run_single_stream(sut, 1, RunSettings(min_duration_s=0.05, min_queries=20,
                                                           warmup_queries=3))
    assert result.latency_ms["max"] < 30
    assert sut.seen[:3] == [0, 1, 2]
    assert sut.seen[3:] == list(range(3, 3 + result.queries))  # measured queries follow on
    assert result.latencies_ns.size == result.queries


def test_qps_is_completed_samples_over_wall_time() -> None:
    result = loadgen.run_offline(FakeSUT(0.002), 4, RunSettings(min_duration_s=0.1, min_queries=10))
    assert result.samples == 4 * result.queries
    assert result.qps == pytest.approx(result.samples * 1e9 / result.wall_ns)
    # Back to back, the queries' latencies tile the measured wall time exactly.
    assert int(result.latencies_ns.sum()) == result.wall_ns
    assert 0.3 * 4 / 0.002 < result.qps <= 4 / 0.002  # no faster than the SUT's sleep allows


def test_percentiles_come_from_every_sample() -> None:
    slow = {300, 700}  # two slow queries in 1000: above the p99.9 rank, far from p99
    result = loadgen.run_single_stream(
        FakeSUT(lambda i: 0.02 if i in slow else 0.0), 1,
        RunSettings(min_duration_s=0.0, min_queries=1000, warmup_queries=0))
    assert result.queries == 1000
    lat = result.latency_ms
    assert lat["p50"] < 1 and lat["p90"] < 1 and lat["p99"] < 1
    assert lat["p99.9"] >= 15 and lat["max"] >= 15
    assert lat["p99.9"] == pytest.approx(np.percentile(result.latencies_ns, 99.9) / 1e6)


def test_scenarios_carry_their_meaning() -> None:
    settings = RunSettings(min_duration_s=0.02, min_queries=10, warmup_queries=1)
    multi = loadgen.run_multi_stream(FakeSUT(0.0005), 8, settings)
    single = loadgen.run_single_stream(FakeSUT(0.0005), 1, settings)
    assert (multi.scenario, multi.batch_size, multi.samples) == ("multi-stream", 8, 8 * multi.queries)
    assert (single.scenario, single.batch_size) == ("single-stream", 1)
    assert single.target_qps is None and single.valid is None
    record = multi.as_record()
    json.dumps(record)  # plain values only
    assert record["latency_ms"].keys() >= {"p50", "p90", "p99", "p99.9", "mean", "max"}
    assert "valid" not in record


def test_timestamp_buffer_grows_without_losing_or_repeating_queries() -> None:
    sut = FakeSUT(0.0)
    # No warm-up to size the buffer from: it starts small and must double many times.
    result = loadgen.run_offline(sut, 1, RunSettings(min_duration_s=0.05, min_queries=1,
                                                     warmup_queries=0))
    assert result.queries > 4 * 1024
    assert sut.seen == list(range(result.queries))
    assert (result.latencies_ns > 0).all()
    assert int(result.latencies_ns.sum()) == result.wall_ns


def test_server_underloaded_is_valid_and_keeps_the_rate() -> None:
    result = loadgen.run_server(FakeSUT(0.002), 1, target_qps=100, latency_bound_ms=50,
                                settings=RunSettings(min_duration_s=0.5, min_queries=40))
    assert result.valid is True
    assert result.latency_ms["p50"] < 25  # queries rarely wait (2 ms + a busy machine's wake-ups)
    assert 0.5 * 100 < result.qps < 1.5 * 100  # paced by arrivals, not by the SUT


def test_server_latency_counts_from_the_scheduled_arrival() -> None:
    # ~2x what a 2 ms SUT sustains: the queue, and so the latency, grows.
    result = loadgen.run_server(FakeSUT(0.002), 1, target_qps=1000, latency_bound_ms=20,
                                settings=RunSettings(min_duration_s=0.25, min_queries=50))
    lat = result.latencies_ns
    quarter = lat.size // 4
    assert result.valid is False
    assert lat[-quarter:].mean() > 2 * lat[:quarter].mean()
    assert lat[-1] > 50 * 0.002e9  # the last query waited behind a long backlog
    assert result.wall_s > 0.25  # the backlog ran on past the schedule
    assert result.target_qps == 1000 and result.latency_bound_ms == 20


def test_server_stops_early_once_certainly_invalid() -> None:
    full = loadgen.run_server(FakeSUT(0.001), 1, target_qps=5000, latency_bound_ms=5,
                              settings=RunSettings(min_duration_s=0.05, min_queries=100),
                              stop_when_invalid=True)
    assert full.valid is False
    assert full.queries < 250  # the schedule had ~250 arrivals
    assert full.latency_ms["p99"] > 5


def test_peak_search_converges_near_capacity() -> None:
    # A bound of ten service times: loose enough for a busy machine's wake-up
    # delays, tight enough that a Poisson queue near capacity misses it.
    settings = RunSettings(min_duration_s=0.25, min_queries=20, warmup_queries=2)
    peak = loadgen.find_peak_server_qps(FakeSUT(0.004), 1, latency_bound_ms=40,
                                        settings=settings, tolerance=0.05, max_trials=8)
    assert 0.3 * peak.capacity_qps <= peak.qps <= peak.capacity_qps
    assert peak.best is not None and peak.best.valid and peak.best.latency_ms["p99"] <= 40
    # Every valid trial is at or below the peak and every invalid one above it...
    for trial in peak.trials:
        assert (trial.target_qps <= peak.qps) == trial.valid
    # ...and the search closed in on it, or ran out of trials.
    invalid = [t.target_qps for t in peak.trials if not t.valid]
    assert len(peak.trials) == 8 or not invalid or min(invalid) - peak.qps <= 0.05 * min(invalid)


def test_multi_client_submits_concurrently() -> None:
    sut = FakeSUT(0.005)
    result = loadgen.run_multi_client(sut, 2, 4, RunSettings(min_duration_s=0.2, min_queries=40,
                                                             warmup_queries=2))
    assert result.clients == 4 and result.scenario == "multi-client"
    assert sut.max_in_flight == 4 and len(sut.threads) == 4
    assert result.queries >= 40
    assert len(sut.seen) == 4 * 2 + result.queries
    # Four overlapping 5 ms queries finish well over twice as fast as one would.
    assert result.qps > 2.5 * 2 * 1e3 / result.latency_ms["p50"]


def test_multi_client_reports_a_failing_client() -> None:
    def sut(query_index: int) -> None:
        if threading.current_thread().name.endswith("-1"):
            raise RuntimeError("device lost")

    with pytest.raises(RuntimeError, match="device lost"):
        loadgen.run_multi_client(sut, 1, 3, RunSettings(min_duration_s=0.01, warmup_queries=1))


def test_steady_state_check_flags_a_sut_that_slows_down() -> None:
    # Windows of 25 queries; a spread allowance wide enough for a busy machine.
    settings = RunSettings(min_duration_s=0.0, min_queries=100, warmup_queries=0, windows=4,
                           max_spread=1.0)
    steady = loadgen.run_offline(FakeSUT(0.001), 1, settings)
    assert steady.stable and steady.spread <= 1.0
    # Halfway through, every query takes 8x as long: window rates ~1000, 1000, 125, 125/s.
    throttled = loadgen.run_offline(FakeSUT(lambda i: 0.001 if i < 50 else 0.008), 1, settings)
    assert not throttled.stable and throttled.spread > 1.0
    first, *_, last = throttled.window_qps
    assert len(throttled.window_qps) == 4 and first > 2 * last


def test_window_throughputs_and_spread() -> None:
    intervals = np.array([1_000_000] * 6 + [2_000_000] * 6)  # 1 ms then 2 ms queries
    rates = stats.window_throughputs(intervals, 3, samples_per_query=2)
    # Windows of 4 queries; the middle one straddles the change: 8 samples in 6 ms.
    assert rates.tolist() == pytest.approx([2000.0, 8 / 0.006, 1000.0])
    assert stats.spread(rates) == pytest.approx((2000 - 1000) / (8 / 0.006))
    assert stats.window_throughputs(intervals[:2], 5, 1).size == 2  # never an empty window
    assert stats.latency_summary_ms([1_000_000, 3_000_000]).keys() == {"p50", "p90", "p99", "mean"}


def test_settings_are_validated() -> None:
    with pytest.raises(ValueError, match="min_queries"):
        RunSettings(min_queries=0)
    with pytest.raises(ValueError, match="target_qps"):
        loadgen.run_server(FakeSUT(0.0), 1, target_qps=0, latency_bound_ms=1)


def test_mlperf_driver_names_the_package_when_loadgen_is_missing(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from xpuperf.measure import mlperf_driver

    monkeypatch.setitem(sys.modules, "mlperf_loadgen", None)  # import now fails
    with pytest.raises(ImportError, match=r"xpuperf\[mlperf\] is needed for the MLPerf driver .*: pip install 'xpuperf\[mlperf\]'"):
        mlperf_driver.run_mlperf(FakeSUT(0.0), "offline", 1, 8)


@pytest.mark.parametrize("scenario", ["offline", "single-stream"])
def test_mlperf_driver_runs_the_same_sut(scenario: str) -> None:
    pytest.importorskip("mlperf_loadgen")
    from xpuperf.measure import mlperf_driver

    sut = FakeSUT(0.001)
    result = mlperf_driver.run_mlperf(sut, scenario, 4, len(sut.inputs),
                                      RunSettings(min_duration_s=0.2, min_queries=20))
    assert result.scenario == scenario
    # LoadGen sizes the run from a pilot's pace; a machine that speeds up between
    # the two can leave it short of the minimum duration, which it then says.
    assert result.valid or "minimum duration not met" in result.invalid_reason, result.invalid_reason
    assert result.samples == 4 * result.queries >= 4 * 20
    assert 0.3 * 4 / 0.001 < result.qps <= 4 / 0.001
    assert set(sut.seen) <= set(range(len(sut.inputs))) | set(range(10))  # library indices
    json.dumps(result.as_record())


def test_mlperf_driver_server() -> None:
    pytest.importorskip("mlperf_loadgen")
    from xpuperf.measure import mlperf_driver

    # LoadGen's early-stopping test wants ~460 queries before it trusts a p99.
    settings = RunSettings(min_duration_s=0.2, min_queries=500)
    result = mlperf_driver.run_mlperf(FakeSUT(0.0002), "server", 2, 8, settings,
                                      target_qps=2000, latency_bound_ms=50)
    assert result.valid, result.invalid_reason
    assert result.target_qps == 2000 and result.latency_ms["p99"] <= 50
    assert 0.5 * 2000 < result.qps < 1.5 * 2000

    too_short = mlperf_driver.run_mlperf(FakeSUT(0.0002), "server", 2, 8,
                                         RunSettings(min_duration_s=0.05, min_queries=20),
                                         target_qps=2000, latency_bound_ms=50)
    assert not too_short.valid and "early stopping" in too_short.invalid_reason
