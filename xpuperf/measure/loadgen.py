"""Drive a system under test under MLPerf LoadGen's scenarios, at next to no cost.

The system under test (SUT) is a callable ``issue(query_index)`` that runs one
query, one batch of ``batch_size`` samples, synchronously. The caller builds real
inputs up front and picks them by ``query_index`` (rotating through them), so
nothing here allocates per query: a query costs the engine one clock read, one
store into a preallocated int64 array and one comparison.

Scenarios keep LoadGen's meanings:

* offline: queries back to back; the figure is throughput.
* single-stream: one query at a time; the figures are latency percentiles.
* multi-stream: a fixed number of samples per query, one query at a time;
  latency per query.
* server: queries arrive as a Poisson process at a target rate; latency counts
  from each query's *scheduled* arrival, so time spent queued behind a slow query
  counts; the run is valid only if its p99 is within the latency bound.
* multi-client: N threads submit back to back concurrently; aggregate QPS.

In a synchronous loop offline, single-stream and multi-stream issue the same way;
they differ in what the result is read for, and all three report both.

Every run warms up first (not measured), then runs until both the minimum
duration and the minimum query count are met. QPS is completed samples over the
wall time of the measured part; percentiles come from every query; and the run is
split into windows of equal query count whose throughputs must agree within
``max_spread`` for the run to count as steady (a SUT that throttles, or a
neighbour that steals the machine midway, shows up here).
"""
from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from xpuperf.measure import stats

Issue = Callable[[int], None]

OFFLINE = "offline"
SINGLE_STREAM = "single-stream"
MULTI_STREAM = "multi-stream"
SERVER = "server"
MULTI_CLIENT = "multi-client"
SCENARIOS = (OFFLINE, SINGLE_STREAM, MULTI_STREAM, SERVER, MULTI_CLIENT)

_clock = time.perf_counter_ns
# time.sleep overshoots by tens of microseconds, more on a busy machine: the server
# sleeps until this close to an arrival and spins the rest, so queries start on time.
_SPIN_NS = 200_000
# The timestamp buffer is sized from the warm-up's pace, within these bounds; a run
# that outgrows it doubles it (see _back_to_back).
_MIN_CAPACITY = 1 << 10
_MAX_CAPACITY = 1 << 22  # 32 MiB of int64


@dataclass(frozen=True)
class RunSettings:
    """How long to run and how to judge the run.

    The measured part lasts at least ``min_duration_s`` AND ``min_queries``
    queries; ``warmup_queries`` run before it and are not measured. The run is
    steady when its ``windows`` window throughputs spread by at most
    ``max_spread`` ((max - min) / median).
    """

    min_duration_s: float = 1.0
    min_queries: int = 100
    warmup_queries: int = 10
    windows: int = 5
    max_spread: float = 0.10

    def __post_init__(self) -> None:
        if self.min_duration_s < 0:
            raise ValueError(f"min_duration_s must be >= 0, got {self.min_duration_s}")
        if self.min_queries < 1:
            raise ValueError(f"min_queries must be >= 1, got {self.min_queries}")
        if self.warmup_queries < 0:
            raise ValueError(f"warmup_queries must be >= 0, got {self.warmup_queries}")
        if self.windows < 1:
            raise ValueError(f"windows must be >= 1, got {self.windows}")
        if self.max_spread < 0:
            raise ValueError(f"max_spread must be >= 0, got {self.max_spread}")

    @property
    def min_duration_ns(self) -> int:
        return int(self.min_duration_s * 1e9)


DEFAULT_SETTINGS = RunSettings()


@dataclass(frozen=True)
class RunFigures:
    """The figures every driver reports for one run (ours and MLPerf LoadGen's),
    named and scaled alike so they can be recorded side by side."""

    scenario: str
    batch_size: int
    queries: int
    samples: int
    wall_ns: int
    qps: float
    latency_ms: dict[str, float]

    @property
    def wall_s(self) -> float:
        return self.wall_ns / 1e9

    def as_record(self) -> dict[str, Any]:
        """Plain JSON-able values; drivers add their own figures to it."""
        return {"scenario": self.scenario, "batch_size": self.batch_size, "queries": self.queries,
                "samples": self.samples, "wall_s": self.wall_s, "qps": self.qps,
                "latency_ms": dict(self.latency_ms)}


@dataclass(frozen=True)
class LoadResult(RunFigures):
    """What one measured run found; ``as_record()`` is its JSON-able form.

    QPS and ``target_qps`` are in samples per second (queries x batch_size).
    ``latency_ms`` holds p50, p90, p95, p99, p99.9, mean and max over every query.
    ``window_qps`` are the steady-state windows' throughputs and ``spread`` their
    (max - min) / median; ``stable`` is ``spread <= max_spread``. The server
    fields are None for the other scenarios. ``latencies_ns`` is every measured
    query's latency in issue order (per client, clients one after another).
    """

    stable: bool
    spread: float
    max_spread: float
    window_qps: tuple[float, ...]
    latencies_ns: np.ndarray = field(repr=False, compare=False)
    clients: int = 1
    target_qps: float | None = None
    latency_bound_ms: float | None = None
    valid: bool | None = None

    def as_record(self) -> dict[str, Any]:
        """Every figure but the raw latencies, as plain JSON-able values."""
        rec = {
            **super().as_record(),
            "stable": self.stable,
            "spread": self.spread,
            "max_spread": self.max_spread,
            "window_qps": list(self.window_qps),
            "clients": self.clients,
        }
        if self.scenario == SERVER:
            rec.update(target_qps=self.target_qps, latency_bound_ms=self.latency_bound_ms,
                       valid=self.valid)
        return rec


@dataclass(frozen=True)
class PeakSearch:
    """Outcome of ``find_peak_server_qps``.

    ``qps`` is the highest target rate (samples/s) found valid, 0.0 when none
    was, and ``best`` the run at that rate; ``capacity_qps`` is the offline
    throughput that bounded the search; ``trials`` every server run, in order.
    """

    qps: float
    capacity_qps: float
    best: LoadResult | None
    trials: tuple[LoadResult, ...]


def run_offline(issue: Issue, batch_size: int, settings: RunSettings = DEFAULT_SETTINGS) -> LoadResult:
    """Throughput: queries back to back."""
    return _run_back_to_back(OFFLINE, issue, batch_size, settings)


def run_single_stream(issue: Issue, batch_size: int = 1,
                      settings: RunSettings = DEFAULT_SETTINGS) -> LoadResult:
    """Latency: one query at a time, the next issued when the last completes."""
    return _run_back_to_back(SINGLE_STREAM, issue, batch_size, settings)


def run_multi_stream(issue: Issue, samples_per_query: int,
                     settings: RunSettings = DEFAULT_SETTINGS) -> LoadResult:
    """Latency per query of ``samples_per_query`` samples, one query at a time."""
    return _run_back_to_back(MULTI_STREAM, issue, samples_per_query, settings)


def run_multi_client(issue: Issue, batch_size: int, clients: int,
                     settings: RunSettings = DEFAULT_SETTINGS) -> LoadResult:
    """``clients`` threads issue back to back concurrently; aggregate QPS.

    ``issue`` must be safe to call from several threads at once. Every client
    warms up with ``warmup_queries`` of its own, then all start together; each
    runs at least the minimum duration and its share of the minimum query count,
    and rotates through the inputs from the same first index. The wall time runs
    from the common start to the last completion of any client.
    """
    if clients < 1:
        raise ValueError(f"clients must be >= 1, got {clients}")
    share = -(-settings.min_queries // clients)
    barrier = threading.Barrier(clients)
    timelines: list[np.ndarray] = [np.empty(0, np.int64)] * clients
    errors: list[Exception] = []

    def client(c: int) -> None:
        try:
            capacity = _warm_up(issue, settings)
            barrier.wait()
            timelines[c] = _back_to_back(issue, settings.warmup_queries, share,
                                         settings.min_duration_ns, capacity)
        except threading.BrokenBarrierError:
            pass  # another client failed before the start; its error is reported
        except Exception as exc:  # noqa: BLE001 - re-raised in the caller's thread below
            errors.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=client, args=(c,), name=f"xpuperf-client-{c}")
               for c in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    start = min(int(tl[0]) for tl in timelines)
    completions = np.sort(np.concatenate([tl[1:] for tl in timelines]))
    # With clients overlapping, what a window of completions cost is the wall
    # time between them, not the sum of their latencies.
    busy = np.diff(completions, prepend=start)
    latencies = np.concatenate([np.diff(tl) for tl in timelines])
    return _result(MULTI_CLIENT, batch_size, latencies, busy, int(completions[-1]) - start,
                   settings, clients=clients)


def run_server(issue: Issue, batch_size: int, target_qps: float, latency_bound_ms: float,
               settings: RunSettings = DEFAULT_SETTINGS, *, seed: int = 0,
               stop_when_invalid: bool = False) -> LoadResult:
    """Poisson arrivals at ``target_qps`` samples/s (queries at target_qps / batch_size).

    One submitter issues each query at its scheduled arrival, or at once when it
    is behind; a query's latency runs from its scheduled arrival to its
    completion. The schedule spans at least the minimum duration and count; the
    run is valid when its p99 is within ``latency_bound_ms``. With
    ``stop_when_invalid`` the run ends as soon as enough queries have missed the
    bound that the p99 must exceed it (an overloaded target would otherwise run
    on for as long as its backlog takes); such a run reports what completed and
    is invalid. The steady-state windows compare the SUT's own throughput while
    busy (samples over service time), not the arrival rate, which a Poisson
    schedule makes noisy by design.
    """
    if target_qps <= 0:
        raise ValueError(f"target_qps must be > 0, got {target_qps}")
    offsets = _poisson_offsets(target_qps / batch_size, settings, seed)
    n = offsets.size
    # numpy's p99 of n values is at least the value at rank floor(0.99 (n - 1)):
    # once this many queries are over the bound, that rank is over it too.
    fatal_misses = n - math.floor(0.99 * (n - 1))
    bound_ns = latency_bound_ms * 1e6
    offs = offsets.tolist()  # Python ints: no numpy scalar boxing in the loop
    starts = np.empty(n, np.int64)
    done = np.empty(n, np.int64)
    first = settings.warmup_queries
    _warm_up(issue, settings)

    clock, sleep = _clock, time.sleep
    misses = 0
    completed = n
    t0 = clock()
    for k in range(n):
        due = t0 + offs[k]
        now = clock()
        if now < due:
            if due - now > _SPIN_NS:
                sleep((due - now - _SPIN_NS) / 1e9)
            now = clock()
            while now < due:
                now = clock()
        starts[k] = now
        issue(first + k)
        end = clock()
        done[k] = end
        if end - due > bound_ns:
            misses += 1
            if stop_when_invalid and misses >= fatal_misses:
                completed = k + 1
                break

    latencies = done[:completed] - (offsets[:completed] + t0)
    busy = done[:completed] - starts[:completed]
    result = _result(SERVER, batch_size, latencies, busy, int(done[completed - 1]) - t0, settings,
                     target_qps=float(target_qps), latency_bound_ms=float(latency_bound_ms))
    valid = completed == n and result.latency_ms["p99"] <= latency_bound_ms
    return replace(result, valid=valid)


def find_peak_server_qps(issue: Issue, batch_size: int, latency_bound_ms: float,
                         settings: RunSettings = DEFAULT_SETTINGS, *, tolerance: float = 0.05,
                         max_trials: int = 10, seed: int = 0) -> PeakSearch:
    """The highest server target rate whose run is valid, by bisection.

    One submitter cannot sustain more than the SUT's offline throughput, so that
    bounds the search: it is tried first, then the interval between the highest
    valid and lowest invalid rate is halved until it is within ``tolerance`` of
    the invalid end, or ``max_trials`` runs were made. Every trial replays the
    same arrival pattern (same ``seed``) scaled to its rate, so trials differ by
    rate only; trials stop early once certainly invalid.
    """
    if not 0 < tolerance < 1:
        raise ValueError(f"tolerance must be in (0, 1), got {tolerance}")
    capacity = run_offline(issue, batch_size, settings).qps
    lo, hi = 0.0, capacity
    best: LoadResult | None = None
    trials: list[LoadResult] = []
    target = capacity
    while len(trials) < max_trials:
        run = run_server(issue, batch_size, target, latency_bound_ms, settings, seed=seed,
                         stop_when_invalid=True)
        trials.append(run)
        if run.valid:
            lo, best = target, run
        else:
            hi = target
        if hi - lo <= tolerance * hi:
            break
        target = (lo + hi) / 2
    return PeakSearch(qps=lo, capacity_qps=capacity, best=best, trials=tuple(trials))


def bare_loop_qps(issue: Issue, batch_size: int, duration_s: float) -> float:
    """Samples per second of ``issue`` called back to back with nothing else: the
    ceiling the engine's offline figure is held against (benchmarks/*_vs_bare.py)."""
    clock = time.perf_counter_ns
    n = 0
    t0 = now = clock()
    deadline = t0 + int(duration_s * 1e9)
    while now < deadline:
        issue(n)
        n += 1
        now = clock()
    return n * batch_size * 1e9 / (now - t0)


def _warm_up(issue: Issue, settings: RunSettings) -> int:
    """Run the warm-up queries; return a timestamp capacity for the measured run
    sized from their pace (queries needed for the minimum duration, with room)."""
    w = settings.warmup_queries
    t = _clock()
    for k in range(w):
        issue(k)
    elapsed = _clock() - t
    expected = settings.min_duration_ns * w * 3 // 2 // elapsed if w and elapsed > 0 else 0
    return min(max(settings.min_queries, expected, _MIN_CAPACITY), _MAX_CAPACITY)


def _back_to_back(issue: Issue, first: int, min_queries: int, min_duration_ns: int,
                  capacity: int) -> np.ndarray:
    """Issue queries ``first``, ``first`` + 1, ... back to back until both minimums
    are met; return [start, completion of each query] in ns.

    This is the hot loop: per query one call, one clock read, one store and a
    comparison that is false until the deadline passes.
    """
    ts = np.empty(first + capacity + 1, np.int64)
    last_required = first + min_queries - 1
    clock = _clock
    resume = first
    t0 = clock()
    deadline = t0 + min_duration_ns
    ts[first] = t0
    while True:
        done = ts[1:]  # done[k] is ts[k + 1]: query k's completion, no index arithmetic
        for k in range(resume, done.size):
            issue(k)
            now = clock()
            done[k] = now
            if now >= deadline and k >= last_required:
                return ts[first:k + 2]
        # Out of room: double the buffer, and cut the pause out of the timeline so
        # it counts neither in the wall time, the minimum duration nor a latency.
        paused = clock()
        resume = done.size
        ts = np.concatenate((ts, np.empty(ts.size, np.int64)))
        shift = clock() - paused
        ts[first:resume + 1] += shift
        deadline += shift


def _run_back_to_back(scenario: str, issue: Issue, batch_size: int,
                      settings: RunSettings) -> LoadResult:
    capacity = _warm_up(issue, settings)
    ts = _back_to_back(issue, settings.warmup_queries, settings.min_queries,
                       settings.min_duration_ns, capacity)
    latencies = np.diff(ts)
    return _result(scenario, batch_size, latencies, latencies, int(ts[-1] - ts[0]), settings)


def _poisson_offsets(queries_per_s: float, settings: RunSettings, seed: int) -> np.ndarray:
    """Arrival times (ns from the start) of a Poisson process, through the first
    arrival at or after the minimum duration and at least min_queries of them."""
    rng = np.random.default_rng(seed)
    gap_ns = 1e9 / queries_per_s
    chunk = max(settings.min_queries, int(queries_per_s * settings.min_duration_s * 1.2) + 16)
    arrivals = np.cumsum(rng.exponential(gap_ns, chunk))
    while arrivals[-1] < settings.min_duration_ns:
        arrivals = np.concatenate((arrivals, arrivals[-1] + np.cumsum(rng.exponential(gap_ns, chunk))))
    through_duration = int(np.searchsorted(arrivals, settings.min_duration_ns)) + 1
    return arrivals[:max(through_duration, settings.min_queries)].astype(np.int64)


def _result(scenario: str, batch_size: int, latencies_ns: np.ndarray, busy_ns: np.ndarray,
            wall_ns: int, settings: RunSettings, **extra: Any) -> LoadResult:
    windows = stats.window_throughputs(busy_ns, settings.windows, batch_size)
    spread = stats.spread(windows)
    samples = int(latencies_ns.size) * batch_size
    latency_ms = stats.latency_summary_ms(latencies_ns, stats.TAIL_PERCENTILES)
    latency_ms["max"] = float(latencies_ns.max()) / 1e6
    return LoadResult(
        scenario=scenario, batch_size=batch_size, queries=int(latencies_ns.size),
        samples=samples, wall_ns=wall_ns, qps=stats.qps(samples, wall_ns),
        latency_ms=latency_ms, stable=spread <= settings.max_spread, spread=spread,
        max_spread=settings.max_spread, window_qps=tuple(float(w) for w in windows),
        latencies_ns=latencies_ns, **extra)

