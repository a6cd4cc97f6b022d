"""Compiler coverage: does the backend compile the model, how long does it take
cold and from its cache, and how much of the graph runs natively."""
import pytest

pytestmark = pytest.mark.compiler_coverage


def test_compile(combo, compile_report, xpu, record):
    r = compile_report
    record(status=r.status, precision_used=r.precision, **xpu.compile_times(combo).as_record(),
           cached=r.cached, nodes_total=r.nodes_total, nodes_native=r.nodes_native,
           coverage=r.coverage, fallback_ops=r.fallback_ops, artifact_bytes=r.artifact_bytes,
           error=r.error, details=r.details)
    assert r.status == "ok", f"{combo.id} did not compile: {r.error}"
