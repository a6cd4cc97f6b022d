"""A speed verdict from samples (pure: numbers in, a verdict out).

Throughput samples of a baseline and a candidate (window or block QPS) are
compared on the log scale, so a change is a ratio. The estimate is
Hodges-Lehmann's (the median of the pairwise differences, or of the paired
differences' Walsh averages) and its confidence interval the distribution-free
one that goes with it: Mann-Whitney's for two independent sets of samples (a
stored baseline's windows against this run's), Wilcoxon's signed-rank for
paired samples (A/B blocks measured next to each other, each pair sharing the
machine's state of the moment). Both are exact, so a handful of samples gets
the wide interval it deserves instead of a normal approximation's narrow one.
asv's `continuous` and Google Benchmark's compare.py use the same rank tests
for the same reason: throughputs of a shared machine are skewed, not normal.

The change is reported as a regression in percent (positive: the candidate is
slower; 20 means it keeps 80 % of the baseline's throughput), and the verdict
against a threshold T (--max-regression) is:

- regressed: the interval lies above 0 (a slowdown, at the stated confidence)
  and reaches past T (a slowdown of T or more is not ruled out);
- improved: the mirror image;
- unchanged: the interval lies within [-T, T];
- inconclusive: anything else: the noise is wider than the threshold, and no
  sample count of this size can tell. The caller measures again or says so.

So an unchanged item is called regressed only when its interval misses 0,
which at 95 % confidence is at most 2.5 % of comparisons, whatever T is; and a
slowdown of T is called regressed whenever it is significant (it cannot then
be called unchanged).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from functools import lru_cache
from typing import Any, Sequence

import numpy as np

REGRESSED, IMPROVED, UNCHANGED, INCONCLUSIVE = "regressed", "improved", "unchanged", "inconclusive"
VERDICTS = (REGRESSED, IMPROVED, UNCHANGED, INCONCLUSIVE)
CONFIDENCE = 0.95
# Exact rank distributions cost O(n^2 m) integers; samples are bounded (records
# keep at most this many) so that a verdict costs milliseconds.
MAX_SAMPLES = 64
PAIRED, UNPAIRED = "paired", "unpaired"
# T when nobody says (--max-regression's default, and `xpuperf compare`'s for
# micro-benchmark items).
DEFAULT_THRESHOLD_PCT = 10.0


@dataclass(frozen=True)
class Verdict:
    """One comparison: ``change_pct`` is the regression estimate and
    ``low_pct``/``high_pct`` its interval (None when the samples are too few
    for any interval at this confidence); ``why`` says what made it
    inconclusive."""

    verdict: str
    change_pct: float | None
    low_pct: float | None
    high_pct: float | None
    threshold_pct: float
    confidence: float
    method: str
    baseline_n: int
    candidate_n: int
    why: str = ""

    def as_record(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        """One line: the verdict, the throughput change and its interval, the threshold."""
        if self.change_pct is None:
            return f"{self.verdict}: {self.why}"
        interval = ("no interval" if self.low_pct is None or self.high_pct is None else
                    f"{self.confidence:.0%} CI {-self.high_pct:+.1f}% to {-self.low_pct:+.1f}%")
        text = (f"{self.verdict}: throughput {-self.change_pct:+.1f}% against the baseline "
                f"({interval}; threshold -{self.threshold_pct:g}%; {self.method}, "
                f"{self.baseline_n} baseline / {self.candidate_n} candidate samples)")
        return f"{text}; {self.why}" if self.why else text


def from_latencies(latencies: Sequence[float]) -> list[float]:
    """Throughput samples (calls per second) of latency samples in microseconds
    (a micro-benchmark item's windows): a slower call is a lower throughput."""
    return [1e6 / x for x in latencies if x > 0]


def decide(low: float | None, high: float | None, threshold: float) -> str:
    """The verdict of a regression interval [low, high] (percent) against T."""
    if low is None or high is None:
        return INCONCLUSIVE
    if low > 0 and high > threshold:
        return REGRESSED
    if high < 0 and low < -threshold:
        return IMPROVED
    if low >= -threshold and high <= threshold:
        return UNCHANGED
    return INCONCLUSIVE


def unpaired(baseline: Sequence[float], candidate: Sequence[float], threshold_pct: float,
             confidence: float = CONFIDENCE) -> Verdict:
    """Two independent sets of throughput samples (higher is better)."""
    a, b = _logs(baseline, "baseline"), _logs(candidate, "candidate")
    diffs = np.sort(np.subtract.outer(b, a).ravel())
    k = _rank_bound(_mann_whitney_counts(a.size, b.size), confidence)
    return _verdict(diffs, k, threshold_pct, confidence, a.size, b.size,
                    "Mann-Whitney / Hodges-Lehmann")


def paired(baseline: Sequence[float], candidate: Sequence[float], threshold_pct: float,
           confidence: float = CONFIDENCE) -> Verdict:
    """Throughput samples taken in pairs (``baseline[i]`` next to ``candidate[i]``)."""
    a, b = _logs(baseline, "baseline"), _logs(candidate, "candidate")
    if a.size != b.size:
        raise ValueError(f"paired samples need as many of each side: {a.size} baseline, "
                         f"{b.size} candidate")
    d = b - a
    walsh = np.sort(((d[:, None] + d[None, :]) / 2)[np.triu_indices(d.size)])
    k = _rank_bound(_signed_rank_counts(d.size), confidence)
    return _verdict(walsh, k, threshold_pct, confidence, a.size, b.size,
                    "paired blocks, Wilcoxon / Hodges-Lehmann")


def _logs(samples: Sequence[float], side: str) -> np.ndarray:
    x = np.asarray(samples, dtype=np.float64)
    if x.ndim != 1 or x.size == 0:
        raise ValueError(f"no {side} samples to compare")
    if x.size > MAX_SAMPLES:
        raise ValueError(f"{x.size} {side} samples: at most {MAX_SAMPLES} are compared")
    if not np.all(np.isfinite(x)) or np.any(x <= 0):
        raise ValueError(f"{side} throughput samples must be finite and > 0, got {x.tolist()}")
    return np.log(x)


def _regression_pct(log_ratio: float) -> float:
    return -100.0 * math.expm1(log_ratio)


def _verdict(ordered: np.ndarray, k: int, threshold: float, confidence: float, n_base: int,
             n_cand: int, method: str) -> Verdict:
    change = _regression_pct(float(np.median(ordered)))
    if k < 1:  # too few samples for any interval at this confidence
        return Verdict(INCONCLUSIVE, change, None, None, threshold, confidence, method, n_base,
                       n_cand, f"too few samples for a {confidence:.0%} interval")
    # A higher log ratio is a smaller regression: the bounds swap.
    low, high = _regression_pct(float(ordered[-k])), _regression_pct(float(ordered[k - 1]))
    verdict = decide(low, high, threshold)
    why = (f"the noise ({high - low:.1f} points wide) is wider than the threshold allows"
           if verdict == INCONCLUSIVE else "")
    return Verdict(verdict, change, low, high, threshold, confidence, method, n_base, n_cand, why)


def _rank_bound(counts: tuple[int, ...], confidence: float) -> int:
    """k such that the k-th smallest and k-th largest of the ordered differences
    bound the interval: the largest k with P(statistic <= k - 1) <= alpha / 2
    (0 when even the extremes do not reach the confidence)."""
    total, tail, cumulative = sum(counts), (1 - confidence) / 2, 0
    for k, count in enumerate(counts):
        cumulative += count
        if cumulative / total > tail:
            return k
    return len(counts)


@lru_cache(maxsize=64)
def _mann_whitney_counts(n: int, m: int) -> tuple[int, ...]:
    """How many orderings give each value of U (0..n m): the coefficients of the
    Gaussian binomial [n + m choose n], built as prod (1 - q^(m+i)) / (1 - q^i)."""
    poly = [1] + [0] * (n * m)
    for i in range(1, n + 1):
        for u in range(n * m, m + i - 1, -1):  # times (1 - q^(m+i))
            poly[u] -= poly[u - m - i]
        for u in range(i, n * m + 1):  # divided by (1 - q^i)
            poly[u] += poly[u - i]
    return tuple(poly)


@lru_cache(maxsize=64)
def _signed_rank_counts(n: int) -> tuple[int, ...]:
    """How many sign patterns give each signed-rank sum (0..n(n+1)/2): the
    coefficients of prod (1 + q^i)."""
    top = n * (n + 1) // 2
    poly = [1] + [0] * top
    for i in range(1, n + 1):
        for t in range(top, i - 1, -1):
            poly[t] += poly[t - i]
    return tuple(poly)
