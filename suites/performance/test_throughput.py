"""Performance: every zoo scenario at its batch sizes, run by the engine
(xpuperf.measure.loadgen) on real samples in the backend's worker process, with the
graph's FLOPs, MFU and the worker's peak resident memory; beside them, where the
backend keeps inputs on its device, the device-resident figures and the device's
memory peak (xpuperf.measure.resident); the device's energy over the measured run
where it has a counter (xpuperf.measure.energy). pytest-benchmark gets every query's latency
(see xpuperf.measure.timing): the end-to-end ones."""
import pytest

from xpuperf.measure.timing import QUERY_LATENCIES, feed_benchmark, shared_host
from xpuperf.worker.devices import xdist_workers

# pytest-benchmark's documented timer option: its rounds read the engine's latencies.
pytestmark = [pytest.mark.performance, pytest.mark.benchmark(timer=QUERY_LATENCIES)]


def test_throughput(perf_case, xpu, compiled, benchmark, record, driver, speed_gate):
    combo, bs, spec = perf_case.combo, perf_case.batch_size, perf_case.spec
    run = xpu.throughput(perf_case, driver)
    result = run["record"]
    feed_benchmark(benchmark, run["latencies_ns"])

    # The worker's figures go into the record whole: a figure it adds needs no edit here.
    figures = {**result, "scenario": spec.name, **xpu.roofline(combo, bs, result["qps"]),
               **run["figures"]}
    benchmark.extra_info.update(figures, combination=combo.id, precision=compiled.precision,
                                hardware=xpu.backend.name)
    record(**figures, precision_used=compiled.precision, timed_by="xpuperf.measure.loadgen")
    if run["valid"] is False:
        pytest.fail(f"server run invalid {run['figures']['runs']} times: p99 "
                    f"{result['latency_ms']['p99']:.4g} ms exceeds the {spec.latency_bound_ms:g} "
                    f"ms bound at {result['target_qps']:.4g} samples/s ({spec.load:g} x the "
                    "offline throughput)" + shared_host(xdist_workers()), pytrace=False)
    # --baseline or A/B (xpuperf.gate): the speed verdict, kept in benchmark.json too.
    comparison = speed_gate(result)
    if comparison is not None:
        benchmark.extra_info["speed_gate"] = comparison
