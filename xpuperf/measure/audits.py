"""MLPerf LoadGen's integrity audits (its compliance tests), for any backend.

* accuracy (TEST01): outputs logged at random during a performance run equal
  the accuracy-mode outputs of the same samples. A backend that skips work or
  returns stale outputs once it sees a benchmark fails it.
* caching (TEST04): one sample issued over and over is at most
  CACHING_MAX_SPEEDUP faster than distinct samples. A backend that caches
  results by input fails it.
* seed (TEST05): another sample order (another seed) moves the query time by at
  most SEED_MAX_CHANGE either way. A backend tuned to the default order
  (prefetching or memoising what it expects next) fails it.

The timing audits run the two sides in alternating blocks, inputs built outside
the timed calls, and compare each round's two block medians: a neighbour that
steals the machine for a while slows both blocks of a round alike. A timing
audit fails only when the rounds show the difference with CONFIDENCE: on a
sign test, enough rounds beyond the bound that an honest backend, whose rounds
fall on either side of it at most half the time, would show as many less than
1 % of the time. So a busy machine makes an audit less sensitive, never flaky,
and a cheat (which gains in every round) still fails. A failing timing audit is
measured again with fresh inputs, up to ATTEMPTS times, and fails only if every
attempt does.

Each query's process CPU time is taken beside its wall time. When the host does
the work (CPU time at least HOST_BOUND of wall time on both sides), CPU time is
compared, as it does not count the time the process waited for the machine; an
accelerator whose host waits idle is judged on wall time.

Verdicts are pure functions of the measurements; the drivers that take them
know nothing of pytest.
"""
from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

from xpuperf.measure import loadgen

Feeds = Mapping[str, np.ndarray]
Run = Callable[[Feeds], Mapping[str, np.ndarray]]

# A deterministic backend reproduces its own outputs bit for bit; this leaves
# room for one whose reductions are not (atomics on a GPU), far below what a
# wrong or stale output differs by.
ACCURACY_RTOL = 1e-5
CACHING_MAX_SPEEDUP = 0.10  # LoadGen's TEST04 bound
SEED_MAX_CHANGE = 0.05
CONFIDENCE = 0.99
HOST_BOUND = 0.5
ATTEMPTS = 2
LOGGED_QUERIES = 16  # outputs kept from an accuracy audit's performance run
WARMUP_QUERIES = 2  # of the accuracy audit's performance run


@dataclass(frozen=True)
class Verdict:
    audit: str
    passed: bool
    message: str
    figures: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Timings:
    """Per-query wall and process CPU times (ns) of one side of a timing audit,
    one row per round."""

    wall_ns: np.ndarray
    cpu_ns: np.ndarray

    @property
    def queries(self) -> int:
        return int(self.wall_ns.size)


# --------------------------------------------------------------------------- verdicts

def accuracy_verdict(pairs: Iterable[tuple[Mapping[str, np.ndarray], Mapping[str, np.ndarray]]],
                     rtol: float = ACCURACY_RTOL) -> Verdict:
    """``pairs`` of (performance-mode outputs, accuracy-mode outputs) for the same
    samples, read once (a generator keeps one pair in memory at a time). Each
    output is compared at its own scale (max |accuracy output|); NaN matches NaN,
    as the same computation gives the same NaN."""
    worst, worst_name, mismatched, count = 0.0, "", 0, 0
    for perf, acc in pairs:
        count += 1
        query_worst = 0.0
        for name, ref in acc.items():
            rel = _relative_diff(np.asarray(perf[name]), np.asarray(ref))
            if rel > query_worst:
                query_worst = rel
                if rel > worst:
                    worst, worst_name = rel, name
        mismatched += query_worst > rtol
    if not count:
        raise ValueError("no logged outputs to compare")
    figures = {"logged_queries": count, "mismatched_queries": mismatched,
               "max_relative_diff": worst, "rtol": rtol}
    if not mismatched:
        return Verdict("accuracy", True, "", figures)
    return Verdict("accuracy", False,
                   f"{mismatched} of {count} queries logged during a performance run differ "
                   f"from accuracy mode (worst: {worst_name}, max |diff| {_pct(worst)} of the "
                   f"output's scale; allowed {_pct(rtol)}): outputs in performance mode are not "
                   "the ones accuracy was judged on", figures)


def caching_verdict(repeated: Timings, distinct: Timings,
                    max_speedup: float = CACHING_MAX_SPEEDUP) -> Verdict:
    """Fails when repeating one sample is more than ``max_speedup`` faster than
    distinct samples in enough rounds (see the module's docstring)."""
    basis, ratios, rep, dist = _rounds(repeated, distinct)
    over = int((ratios > 1 + max_speedup).sum())
    needed = sign_test_rounds(ratios.size, 1 - CONFIDENCE)
    figures = {"basis": basis, "median_repeated_ms": rep, "median_distinct_ms": dist,
               "speedup": float(np.median(ratios)) - 1, "max_speedup": max_speedup,
               "rounds": int(ratios.size), "rounds_over_bound": over, "rounds_needed": needed,
               "queries": repeated.queries + distinct.queries}
    if over < needed:
        return Verdict("caching", True, "", figures)
    return Verdict("caching", False,
                   f"repeating one sample was more than {_pct(max_speedup)} faster than distinct "
                   f"samples in {over} of {ratios.size} rounds (median speedup "
                   f"{_pct(figures['speedup'])}, {basis} time {rep:.4g} ms vs {dist:.4g} ms per "
                   f"query; {needed} rounds make it certain at {_pct(CONFIDENCE)}): results "
                   "are cached", figures)


def seed_verdict(default: Timings, alternate: Timings,
                 max_change: float = SEED_MAX_CHANGE) -> Verdict:
    """Fails when another sample order moves the query time by more than
    ``max_change`` either way in enough rounds (see the module's docstring)."""
    basis, ratios, base, other = _rounds(default, alternate)
    slower = int((ratios > 1 + max_change).sum())
    faster = int((ratios < 1 - max_change).sum())
    needed = sign_test_rounds(ratios.size, (1 - CONFIDENCE) / 2)  # two-sided
    change = float(np.median(ratios)) - 1
    figures = {"basis": basis, "median_default_ms": base, "median_alternate_ms": other,
               "change": change, "max_change": max_change, "rounds": int(ratios.size),
               "rounds_slower": slower, "rounds_faster": faster, "rounds_needed": needed,
               "queries": default.queries + alternate.queries}
    if max(slower, faster) < needed:
        return Verdict("seed", True, "", figures)
    direction = "slower" if slower >= needed else "faster"
    return Verdict("seed", False,
                   f"another sample order ran more than {_pct(max_change)} {direction} in "
                   f"{max(slower, faster)} of {ratios.size} rounds (median change "
                   f"{'+' if change > 0 else ''}{_pct(change)}, {basis} time {base:.4g} ms -> "
                   f"{other:.4g} ms per query; {needed} rounds make it certain at "
                   f"{_pct(CONFIDENCE)}): the system is tuned to the default order", figures)


def sign_test_rounds(rounds: int, alpha: float) -> int:
    """The fewest of ``rounds`` that must lie beyond the bound for a sign test to
    reject, at level ``alpha``, that at most half of them would; rounds + 1 when
    even all of them would not."""
    tail = 0.0
    for k in range(rounds, -1, -1):
        tail += math.comb(rounds, k) / 2 ** rounds
        if tail > alpha:
            return k + 1
    return 0


def confirmed(measure: Callable[[int], Verdict], attempts: int = ATTEMPTS) -> Verdict:
    """The first passing verdict of ``measure(attempt)`` for attempt 0, 1, ...,
    or the last failing one; its figures say how many attempts were made. Each
    attempt must use inputs of its own, or a cache would pass the second."""
    if attempts < 1:
        raise ValueError(f"attempts must be >= 1, got {attempts}")
    for attempt in range(attempts):
        verdict = measure(attempt)
        if verdict.passed or attempt == attempts - 1:
            break
    return Verdict(verdict.audit, verdict.passed, verdict.message,
                   {**verdict.figures, "attempts": attempt + 1})


def _rounds(a: Timings, b: Timings) -> tuple[str, np.ndarray, float, float]:
    """(basis, b's block median over a's per round, median ms of a, median ms of b)
    on CPU time where the host does the work on both sides, else wall time."""
    host_bound = all(t.cpu_ns.sum() >= HOST_BOUND * t.wall_ns.sum() for t in (a, b))
    basis = "cpu" if host_bound else "wall"
    ta, tb = (t.cpu_ns if host_bound else t.wall_ns for t in (a, b))
    if ta.ndim != 2 or ta.shape[0] != tb.shape[0] or ta.size == 0 or tb.size == 0:
        raise ValueError("the two sides need the same number of rounds of query times")
    per_round = np.median(tb, axis=1) / np.maximum(np.median(ta, axis=1), 1)
    return basis, per_round, float(np.median(ta)) / 1e6, float(np.median(tb)) / 1e6


def _relative_diff(a: np.ndarray, b: np.ndarray) -> float:
    """max |a - b| over b's scale; inf when they disagree on shape or on which
    values are NaN or infinite."""
    if a.shape != b.shape:
        return math.inf
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    equal = (a64 == b64) | (np.isnan(a64) & np.isnan(b64))
    if equal.all():
        return 0.0
    diff = np.nan_to_num(np.where(equal, 0.0, np.abs(a64 - b64)), nan=np.inf)
    finite = np.isfinite(b64)
    scale = float(np.abs(b64[finite]).max()) if finite.any() else 0.0
    worst = float(diff.max())
    return worst / scale if scale > 0 else math.inf


def _pct(fraction: float) -> str:
    percent = 100 * fraction
    return f"{percent:.0f}%" if abs(percent) >= 100 else f"{percent:.3g}%"


# --------------------------------------------------------------------------- inputs

def distinct_index_batches(samples: int, batch_size: int, count: int, seed: int,
                           exclude: tuple[int, ...] = ()) -> list[tuple[int, ...]] | None:
    """``count`` different batches of sample indices (drawn with replacement, in
    random order), none equal to ``exclude``; None when the dataset cannot give
    that many. Distinct batches never repeat an input, whatever a cache keys on
    a whole batch by."""
    possible = samples ** batch_size - (1 if len(exclude) == batch_size else 0)
    if possible < count:
        return None
    rng = np.random.default_rng(seed)
    if possible <= 4 * count:  # few enough to list, so rejection never stalls
        every = [t for t in itertools.product(range(samples), repeat=batch_size) if t != exclude]
        return [every[i] for i in rng.permutation(len(every))[:count]]
    seen, out = {exclude}, []
    while len(out) < count:
        t = tuple(int(i) for i in rng.integers(0, samples, batch_size))
        if t not in seen:
            seen.add(t)
            out.append(t)
    return out


def alternate_order(batches: int, passes: int, seed: int) -> list[list[int]]:
    """``passes`` random permutations of the batch indices: the sample order of
    another seed, each pass issuing every batch once as the default order does."""
    rng = np.random.default_rng(seed)
    return [[int(i) for i in rng.permutation(batches)] for _ in range(passes)]


# --------------------------------------------------------------------------- drivers

def alternating_blocks(run: Run, sides: Mapping[str, Callable[[int], Sequence[Feeds]]],
                       rounds: int) -> dict[str, Timings]:
    """Per-query times of each side, taken in alternating blocks.

    ``sides[name](r)`` gives the inputs of that side's block ``r``, built before
    its queries are timed; block -1, run first and not timed, is the warm-up.
    Which side goes first alternates round by round.
    """
    names = list(sides)
    wall, cpu = time.perf_counter_ns, time.process_time_ns
    for name in names:
        for feeds in sides[name](-1):
            run(feeds)
    out: dict[str, tuple[list[list[int]], list[list[int]]]] = {name: ([], []) for name in names}
    for r in range(rounds):
        for name in names[r % 2:] + names[:r % 2]:
            block = list(sides[name](r))
            walls, cpus = [], []
            for feeds in block:
                t, c = wall(), cpu()
                run(feeds)
                cpus.append(cpu() - c)
                walls.append(wall() - t)
            out[name][0].append(walls)
            out[name][1].append(cpus)
    return {name: Timings(np.asarray(w, dtype=np.int64), np.asarray(c, dtype=np.int64))
            for name, (w, c) in out.items()}


def logged_performance_run(run: Run, batches: Sequence[Feeds], batch_size: int, queries: int,
                           seed: int, max_bytes: int | None = None
                           ) -> list[tuple[int, dict[str, np.ndarray]]]:
    """A performance run (the engine's offline scenario, ``queries`` measured
    queries rotating through ``batches``) that keeps the outputs of up to
    LOGGED_QUERIES measured queries picked at random: [(batch index, outputs)].
    With ``max_bytes``, it stops keeping them once they would take more (the
    first is always kept)."""
    warmup = WARMUP_QUERIES
    rng = np.random.default_rng(seed)
    log_at = {int(k) for k in rng.choice(np.arange(warmup, warmup + queries),
                                         size=min(LOGGED_QUERIES, queries), replace=False)}
    logged: list[tuple[int, dict[str, np.ndarray]]] = []
    kept = [0]

    def issue(k: int) -> None:
        b = k % len(batches)
        out = run(batches[b])
        if k in log_at:
            size = sum(np.asarray(v).nbytes for v in out.values())
            if not logged or max_bytes is None or kept[0] + size <= max_bytes:
                kept[0] += size
                logged.append((b, {name: np.array(v, copy=True) for name, v in out.items()}))

    settings = loadgen.RunSettings(min_duration_s=0, min_queries=queries, warmup_queries=warmup,
                                   windows=1)
    loadgen.run_offline(issue, batch_size, settings)
    return logged
