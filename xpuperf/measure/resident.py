"""Device-resident figures of a compiled model (backends.base.Resident).

An item's end-to-end run (host arrays in, host arrays out: what MLPerf
measures) says what a user of the host API gets; on an accelerator the copies
in and out may be a large part of it. These figures leave them out: the
offline throughput over batches placed on the device beforehand, the device
time of a query by the device's own clock, and the copy rates each way, so a
reader sees where a query's time goes.
"""
from __future__ import annotations

import statistics
import time
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from backends.base import Resident
from xpuperf.measure import loadgen

DEVICE_RUNS = 20  # runs timed by the device's clock; their p50 and p90 are reported
COPY_RUNS = 5  # copies each way; their median rate is reported


def measure(resident: Resident, batches: Sequence[Mapping[str, np.ndarray]], batch_size: int,
            settings: loadgen.RunSettings) -> dict[str, Any]:
    """{qps, latency_ms {p50, p90, p99}, queries, device_ms {p50, p90} (None without
    a device clock), device_qps, device_time_source, h2d_bytes_per_s,
    d2h_bytes_per_s} of ``resident`` at ``batch_size`` over ``batches`` (host
    feeds), each put on the device once, before anything is timed."""
    placed = [resident.put(feeds) for feeds in batches]
    run = resident.run
    result = loadgen.run_offline(lambda k: run(placed[k % len(placed)]), batch_size, settings)
    figures: dict[str, Any] = {
        "qps": result.qps, "queries": result.queries,
        "latency_ms": {k: result.latency_ms[k] for k in ("p50", "p90", "p99")}}
    seconds = resident.device_seconds(placed[0], DEVICE_RUNS)
    if seconds:
        ms = np.asarray(seconds) * 1e3
        figures.update(device_ms={"p50": float(np.percentile(ms, 50)),
                                  "p90": float(np.percentile(ms, 90))},
                       device_qps=batch_size * 1e3 / float(np.percentile(ms, 50)),
                       device_time_source=f"device events, {len(seconds)} runs")
    else:
        figures.update(device_ms=None, device_qps=None,
                       device_time_source="none: the device has no clock of its own")
    figures["h2d_bytes_per_s"] = _rate(_nbytes(batches[0]), lambda: resident.put(batches[0]))
    outputs = run(placed[0])
    figures["d2h_bytes_per_s"] = _rate(_nbytes(resident.get(outputs)),
                                       lambda: resident.get(outputs))
    return figures


def _nbytes(arrays: Mapping[str, np.ndarray]) -> int:
    return sum(np.asarray(a).nbytes for a in arrays.values())


def _rate(nbytes: int, copy: Callable[[], Any]) -> float | None:
    """Bytes per second of ``copy()`` moving ``nbytes``, median of COPY_RUNS; None
    where the copy is too quick for the clock to tell."""
    rates = []
    for _ in range(COPY_RUNS):
        start = time.perf_counter_ns()
        copy()
        ns = time.perf_counter_ns() - start
        if ns > 0:
            rates.append(nbytes * 1e9 / ns)
    return statistics.median(rates) if rates else None
