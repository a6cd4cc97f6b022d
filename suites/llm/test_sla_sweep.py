"""The SLA sweep of each LLM workload (--llm-sweep, over --llm-devices; collected
only with it): its load at every point, and the highest point that meets the
SLOs (xpuperf.generation.sweep)."""
from __future__ import annotations

import pytest

from xpuperf.measure.timing import QUERY_LATENCIES, feed_benchmark

# pytest-benchmark's rounds are the sweep's requests, replayed (feed_benchmark).
pytestmark = pytest.mark.benchmark(timer=QUERY_LATENCIES)


def test_sla_sweep(llm, gen_sweep, engine_ready, record_llm, benchmark):
    """Every point: TTFT, TPOT, ITL and E2E percentiles, tokens/s (per device, per
    user), goodput, met the SLOs or not; the verdict: the highest point that met
    them, the lowest that did not. Fails only when no point met them.
    pytest-benchmark's rounds: every request's end-to-end latency, all points."""
    fields, problems = llm.run_sweep(gen_sweep.spec, gen_sweep.precision)
    feed_benchmark(benchmark, fields.pop("request_latencies_ns"))
    benchmark.extra_info.update(fields)
    record_llm(**fields)
    assert not problems, "; ".join(problems)
