"""Timed calls for throughput items driven by pytest-benchmark's pedantic mode.

pytest-benchmark owns the loop (so --benchmark-json/-compare see every round);
this object is the target it calls. Each call runs one real batch, rotating
through distinct batches, and keeps its perf_counter_ns start and end, from
which QPS (samples over wall time) and latency percentiles are computed.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from xpuperf.stats import latency_summary_ms, qps


@dataclass(frozen=True)
class Throughput:
    batch_size: int
    rounds: int
    samples: int
    wall_s: float
    qps: float
    latency_ms: dict[str, float]


class CallTimer:
    def __init__(self, run: Callable[[Any], Any], batches: Sequence[Any]):
        self._run, self._batches = run, batches
        self._starts: list[int] = []
        self._ends: list[int] = []

    def __call__(self) -> None:
        batch = self._batches[len(self._starts) % len(self._batches)]
        self._starts.append(time.perf_counter_ns())
        self._run(batch)
        self._ends.append(time.perf_counter_ns())

    def plan_rounds(self, min_time_s: float, min_rounds: int, probes: int = 3) -> int:
        """Rounds enough for both ``min_time_s`` and ``min_rounds``, from a few
        timed probe calls (which are forgotten afterwards)."""
        for _ in range(probes):
            self()
        per_call = float(np.median(np.subtract(self._ends, self._starts))) / 1e9
        self._starts.clear()
        self._ends.clear()
        return max(min_rounds, math.ceil(min_time_s / max(per_call, 1e-9)))

    def result(self, batch_size: int, warmup_rounds: int) -> Throughput:
        starts, ends = self._starts[warmup_rounds:], self._ends[warmup_rounds:]
        if not starts:
            raise ValueError("no measured rounds: every call was a warm-up")
        wall = ends[-1] - starts[0]
        return Throughput(batch_size=batch_size, rounds=len(starts), samples=batch_size * len(starts),
                          wall_s=wall / 1e9, qps=qps(batch_size * len(starts), wall),
                          latency_ms=latency_summary_ms(np.subtract(ends, starts)))
