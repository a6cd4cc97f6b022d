"""Micro-benchmarks: one op, memory copy or collective per item, each timed and
judged against the device's measured ceilings and its datasheet, and each
checked for correctness (a fast op that computes wrong fails)."""
from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from xpuperf.measure.timing import QUERY_LATENCIES, feed_benchmark
from xpuperf.microperf.timing import window_latencies
from xpuperf.microperf.xccl import SAMPLES

# pytest-benchmark's rounds are the measured calls, replayed (feed_benchmark).
pytestmark = pytest.mark.benchmark(timer=QUERY_LATENCIES)


def _windowed(result: dict[str, Any]) -> dict[str, Any]:
    """The result with its per-call times cut into window latencies (what the
    speed gate judges); a skip or a lost worker ends the item here."""
    if "skipped" in result:
        pytest.skip(result["skipped"])
    if "error" in result:
        pytest.fail(result["error"], pytrace=False)
    result["window_latency_us"] = window_latencies(result[SAMPLES])
    return result


def _recorded(result: dict[str, Any], benchmark: Any, record_micro: Any) -> dict[str, Any]:
    """The result's per-call times to pytest-benchmark as its rounds, the rest to
    the record and to extra_info."""
    seconds = _windowed(result).pop(SAMPLES)
    feed_benchmark(benchmark, np.asarray(seconds) * 1e9)
    record_micro(**result)
    benchmark.extra_info.update(result)
    return result


def test_micro_op(micro_runner, micro_case, record_micro, micro_gate, benchmark):
    """An operator or a copy: latency, TFLOP/s, GB/s and shares of peak; its
    result against the fp64 reference (xpuperf.microperf.correctness); its
    speed against --baseline's, where given."""
    def run() -> dict[str, Any]:
        return micro_runner.run(micro_case.op, micro_case.op_args)

    result = _recorded(run(), benchmark, record_micro)
    assert result["passed"], f"{micro_case.op} computes wrong: {result['why']}"
    micro_gate(result, lambda: _windowed(run()))


def test_collective(xccl_results, xccl_case, record_micro, micro_gate, benchmark):
    """A collective on world_size ranks: latency, algorithm and bus bandwidth;
    every rank's buffer against the exactly known result. Its speed is judged
    against --baseline on its world's one launch: measuring again would start
    the ranks again, so an undecided collective adds no windows."""
    result = _recorded(xccl_results(xccl_case), benchmark, record_micro)
    assert result["passed"], (f"{xccl_case.op}: {result['wrong_elements']} wrong element(s) "
                              f"over {result['world_size']} ranks")
    micro_gate(result, lambda: {})
