"""Per-op conformance: each of onnx's own node test cases compiled and run by the
backend, compared with the case's tolerances (xpuperf.conformance.opconformance).

A case the backend is known to fail is listed in its expected-failures file
(xpuperf.conformance.expected) and runs as an expected failure."""
import pytest

from xpuperf.records import RECORD_KEY

pytestmark = [pytest.mark.compiler_coverage, pytest.mark.op_conformance]


def test_op(op_case, op_runner, expected_failures_file, record_property):
    result = op_runner.run(op_case.id, op_case.op_type)
    record_property(RECORD_KEY, {"category": result.outcome, "reason": result.reason,
                                 "seconds": result.seconds})
    if result.outcome == "declined":
        pytest.skip(f"declined: {result.reason}")
    assert result.passed, (f"{result.outcome}: {op_case.op_type}: {result.reason}\n"
                           f"(fix it, or list this item in {expected_failures_file})")
