"""Performance: QPS and latency per batch size, measured on real samples through
pytest-benchmark (so --benchmark-json / --benchmark-compare see every item)."""
import pytest

from xpuperf.timing import CallTimer

pytestmark = pytest.mark.performance


def test_throughput(perf_case, xpu, compiled, benchmark, record):
    perf = xpu.zoo.perf
    timer = CallTimer(compiled.run, xpu.perf_batches(perf_case.combo, perf_case.batch_size))
    rounds = timer.plan_rounds(perf.get("min_time_s", 1.0), int(perf.get("min_rounds", 10)))
    warmup = int(perf.get("warmup_rounds", 1))
    if benchmark.disabled:
        # Disabled (as under xdist), pytest-benchmark calls the target just once,
        # below; xpuperf's figures still need the full run.
        for _ in range(warmup + rounds - 1):
            timer()
    benchmark.pedantic(timer, rounds=rounds, warmup_rounds=warmup, iterations=1)
    t = timer.result(perf_case.batch_size, warmup)
    figures = {"qps": t.qps, "latency_ms": t.latency_ms, "batch_size": t.batch_size,
               "scenario": perf_case.scenario}
    benchmark.extra_info.update(figures, precision=compiled.report.precision,
                                hardware=xpu.backend.name)
    record(**figures, precision_used=compiled.report.precision, rounds=t.rounds,
           samples=t.samples, wall_s=t.wall_s,
           timed_by="xpuperf" if benchmark.disabled else "pytest-benchmark")
