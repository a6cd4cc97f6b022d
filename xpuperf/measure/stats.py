"""Latency and throughput statistics (pure numpy).

QPS is completed samples over wall time, never derived from mean latency, and
percentiles come from every sample (numpy's linear interpolation), so a p99 of
100 samples is not silently their maximum.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

PERCENTILES = (50, 90, 99)
# The load generator also reports p95 (the percentile most services state their
# latency target at) and p99.9: the tail a server's SLA is judged on.
TAIL_PERCENTILES = (50, 90, 95, 99, 99.9)


def latency_summary_ms(latencies_ns: Sequence[int] | np.ndarray,
                       percentiles: Sequence[float] = PERCENTILES) -> dict[str, float]:
    """{'p50': ..., 'p90': ..., 'p99': ..., 'mean': ...} in milliseconds."""
    lat = np.asarray(latencies_ns, dtype=np.float64) / 1e6
    if lat.size == 0:
        raise ValueError("no latency samples to summarise")
    out = {f"p{p:g}": float(v) for p, v in zip(percentiles, np.percentile(lat, percentiles))}
    out["mean"] = float(lat.mean())
    return out


def qps(samples: int, wall_ns: int) -> float:
    """Completed samples per second of wall time."""
    if wall_ns <= 0:
        raise ValueError(f"wall time must be positive, got {wall_ns} ns")
    return samples * 1e9 / wall_ns


def window_throughputs(intervals_ns: np.ndarray, windows: int,
                       samples_per_query: int) -> np.ndarray:
    """Samples per second in each of ``windows`` consecutive windows of a run.

    ``intervals_ns[k]`` is the time query k kept the system busy, in completion
    order (for back-to-back queries, the gap between consecutive completions).
    Windows hold equal numbers of queries rather than equal times, so a slow SUT
    with few queries per window is not judged on how a window boundary happened
    to cut a query. Fewer queries than windows give one window per query.
    """
    iv = np.asarray(intervals_ns, dtype=np.int64)
    if iv.size == 0:
        raise ValueError("no queries to split into windows")
    if windows < 1:
        raise ValueError(f"windows must be >= 1, got {windows}")
    chunks = np.array_split(iv, min(windows, iv.size))
    return np.array([c.size * samples_per_query * 1e9 / max(int(c.sum()), 1) for c in chunks])


def spread(values: np.ndarray) -> float:
    """(max - min) / median: how far a run's window throughputs disagree."""
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0:
        raise ValueError("no values to compare")
    med = float(np.median(v))
    return float((v.max() - v.min()) / med) if med > 0 else 0.0
