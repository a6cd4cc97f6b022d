"""Whole sessions on a tiny zoo: faults are caught, named, and the reports are
still written; under pytest-xdist the reports are complete."""
import json
import subprocess
from pathlib import Path

import pytest

from tests_selftest.sessions import run_session, tiny_zoo


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return tiny_zoo(tmp_path_factory.mktemp("tiny"))


def run_suites(folder: Path, hardware: str, *extra: str) -> subprocess.CompletedProcess:
    return run_session(folder, hardware, "--benchmark-disable", *extra)


def result(folder: Path, hardware: str) -> dict:
    return json.loads((folder / hardware / "tiny-bert" / "result-fp32.json").read_text())


def test_a_nan_output_fails_numerics_by_name_and_reports_are_written(tiny):
    hw = "tests_selftest.fakes:NanBackend"
    r = run_suites(tiny, hw)
    assert r.returncode == 1, r.stdout[-3000:]
    assert "FAILED suites/accuracy/test_accuracy.py::test_numerics[tiny-bert-fake-fp32]" in r.stdout
    assert "start_logits: 3 NaN and 0 Inf values" in r.stdout  # one per batch of 2, 6 samples
    assert "1 failed" in r.stdout and "passed" in r.stdout  # compile and throughput still pass
    assert (tiny / hw / "report.html").is_file()
    res = result(tiny, hw)
    assert res["Status"] == "failed" and res["Suites"]["numerics"] == "failed"
    assert res["Accuracy"]["Data Source"] == "generated"  # fake data: no metric item records it
    assert "NaN" in json.dumps(res)


def test_a_compile_failure_fails_compile_and_its_dependants_with_the_reason(tiny):
    hw = "tests_selftest.fakes:NoCompileBackend"
    r = run_suites(tiny, hw)
    assert r.returncode == 1
    assert "FAILED suites/compiler_coverage/test_compile.py::test_compile[tiny-bert-fake-fp32]" in r.stdout
    assert r.stdout.count("no kernel for op Erf") >= 2  # the compile item and its dependants
    res = result(tiny, hw)
    assert res["Graph Compile"]["Status"] == "failed"
    assert "no kernel for op Erf" in json.dumps(res)


def test_compile_is_timed_cold_and_from_the_cache_and_a_hit_is_never_a_compile(tmp_path):
    folder = tiny_zoo(tmp_path)
    compile_only = ("--benchmark-disable", "-k", "test_compile")
    first = run_session(folder, "CPU", *compile_only)
    assert first.returncode == 0, first.stdout[-3000:]
    cold = result(folder, "CPU")["Graph Compile"]
    assert cold["Compile Duration"] > 0 and cold["Cached Compile Duration"] > 0
    assert cold["Compile Duration Note"] == "cold: this session"

    # The next session loads the compiled model: the cold figure is the first session's.
    again = run_session(folder, "CPU", *compile_only)
    assert again.returncode == 0, again.stdout[-3000:]
    warm = result(folder, "CPU")["Graph Compile"]
    assert warm["Cached"] is True
    assert warm["Compile Duration"] == cold["Compile Duration"]
    assert warm["Compile Duration Note"].startswith("cold: an earlier session (")

    # A backend without a compile cache has no cached figure, and says why.
    hw = "tests_selftest.fakes:NoCacheBackend"
    assert run_session(folder, hw, *compile_only).returncode == 0
    plain = result(folder, hw)["Graph Compile"]
    assert plain["Compile Duration"] > 0 and plain["Cached Compile Duration"] is None
    assert plain["Cached"] is False
    assert "NOCACHE keeps no compile cache" in plain["Compile Duration Note"]


def test_reports_are_complete_under_xdist(tiny):
    r = run_suites(tiny, "CPU", "-n", "2", "--dist", "loadgroup")
    assert r.returncode == 0, r.stdout[-3000:]
    res = result(tiny, "CPU")
    assert set(res["Suites"]) == {"compile", "metric", "numerics", "performance"}
    assert res["Suites"]["metric"] == "skipped"  # fake data has no task metric
    assert res["Performance"] and res["Performance"][0]["QPS"] > 0
