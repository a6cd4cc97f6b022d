"""Compiler coverage: does the backend compile the model, how long does it take,
and how much of the graph runs natively."""
import pytest

pytestmark = pytest.mark.compiler_coverage


def test_compile(combo, compile_report, record):
    r = compile_report
    record(status=r.status, seconds=r.seconds, precision_used=r.precision,
           nodes_total=r.nodes_total, nodes_native=r.nodes_native, coverage=r.coverage,
           fallback_ops=r.fallback_ops, artifact_bytes=r.artifact_bytes, cached=r.cached,
           error=r.error, details=r.details)
    assert r.status == "ok", f"{combo.id} did not compile: {r.error}"
