"""MLPerf LoadGen's integrity audits per combination (xpuperf.measure.audits), run in the
backend's worker process: the performance figures count only if performance
mode computes what accuracy mode was judged on, and no result cache or tuning to
the sample order made them. Audits run at the largest batch size of which the
dataset fills two batches."""
import pytest

pytestmark = pytest.mark.audit


def _audit(xpu, combo, record, name: str) -> None:
    verdict = xpu.audit(combo, name)
    if "skipped" in verdict:
        pytest.skip(verdict["skipped"])
    record(audit=verdict["audit"], batch_size=verdict["batch_size"], **verdict["figures"])
    if not verdict["passed"]:
        pytest.fail(verdict["message"], pytrace=False)


def test_audit_accuracy(combo, xpu, compiled, record):
    _audit(xpu, combo, record, "accuracy")


def test_audit_caching(combo, xpu, compiled, record):
    _audit(xpu, combo, record, "caching")


def test_audit_seed(combo, xpu, compiled, record):
    _audit(xpu, combo, record, "seed")
