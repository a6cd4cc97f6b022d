"""Compiler coverage: does the backend compile the model, how long does it take
cold and from its cache, and how much of the graph runs natively."""
import pytest

pytestmark = pytest.mark.compiler_coverage


def test_compile(combo, compilation, record, xpu):
    r = compilation.report
    # Other suites and the reports need the model's size in FLOPs, from its graph.
    graph = xpu.graph_figures(combo) if r.status == "ok" else {}
    details = {**r.details, **({"traceback": compilation.traceback} if compilation.traceback else {})}
    record(status=r.status, precision_used=r.precision, **compilation.times,
           cached=r.cached, nodes_total=r.nodes_total, nodes_native=r.nodes_native,
           coverage=r.coverage, fallback_ops=r.fallback_ops, artifact_bytes=r.artifact_bytes,
           error=r.error, details=details, **graph)
    if r.status != "ok":  # not an assert: pytest would shorten the reason and the traceback
        pytest.fail(f"{combo.id} did not compile: {r.error}"
                    + (f"\n\nthe backend's traceback:\n{compilation.traceback}"
                       if compilation.traceback else ""), pytrace=False)
