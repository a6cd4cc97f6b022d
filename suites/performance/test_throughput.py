"""Performance: every zoo scenario at its batch sizes, run by the engine
(xpuperf.loadgen) on real samples, with the graph's FLOPs, MFU and peak resident
memory; pytest-benchmark gets every query's latency (see xpuperf.timing)."""
import pytest

from xpuperf import loadgen
from xpuperf.memory import PeakRSS
from xpuperf.timing import feed_benchmark, run_mlperf_beside, run_scenario, run_settings

pytestmark = pytest.mark.performance


def test_throughput(perf_case, xpu, compiled, benchmark, record, driver):
    combo, bs, spec = perf_case.combo, perf_case.batch_size, perf_case.spec
    batches = xpu.perf_batches(combo, bs)

    def issue(k: int) -> None:
        compiled.run(batches[k % len(batches)])

    settings = run_settings(xpu.zoo.perf)

    def capacity() -> float:  # the server's: this session's offline QPS at bs, else measured now
        return xpu.capacity(combo, bs, lambda: loadgen.run_offline(issue, bs, settings).qps)

    with PeakRSS() as rss:
        result, runs = run_scenario(spec, issue, bs, settings, capacity)
    if spec.name == "offline":
        xpu.note_capacity(combo, bs, result.qps)
    feed_benchmark(benchmark, result.latencies_ns)

    figures = {**result.as_record(), "scenario": spec.name,
               **xpu.roofline(combo, bs, result.qps), "peak_rss_mb": rss.mb,
               "rss_method": rss.method}
    if driver == "mlperf":
        figures["mlperf"] = run_mlperf_beside(spec, issue, bs, len(batches), settings, result)
    benchmark.extra_info.update(figures, combination=combo.id, precision=compiled.report.precision,
                                hardware=xpu.backend.name)
    record(**figures, precision_used=compiled.report.precision, distinct_batches=len(batches),
           runs=runs, timed_by="xpuperf.loadgen")
    if result.valid is False:
        pytest.fail(f"server run invalid {runs} times: p99 {result.latency_ms['p99']:.4g} ms "
                    f"exceeds the {spec.latency_bound_ms:g} ms bound at {result.target_qps:.4g} "
                    f"samples/s ({spec.load:g} x the offline throughput)", pytrace=False)
