"""pytest-benchmark's saved runs have one place, .benchmarks/<HARDWARE> in the
checkout, whatever --report-dir says; and a failed --benchmark-compare-fail is
a clear failure of the run, also in session.json."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests_selftest.sessions import ROOT, conv_zoo, python_env, session_command


def test_a_report_dir_session_leaves_no_benchmarks_folder_in_the_working_directory(tmp_path: Path) -> None:
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q",
         str(ROOT / "tests_selftest" / "test_records.py"), "--zoo", str(ROOT / "zoo.yaml"),
         "--report-dir", str(tmp_path / "reports")],
        cwd=cwd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert list(cwd.iterdir()) == []
    assert (ROOT / ".benchmarks" / "CPU").is_dir()
    assert not (tmp_path / "reports" / ".benchmarks").exists()


def test_compare_fail_finds_the_history_of_another_report_dir_and_fails_clearly(tmp_path):
    """A run saved with one --report-dir; a slower one with another report
    folder, other backend options and its working directory outside the
    checkout (pytest-benchmark's INTERNALERROR before) compares with it and
    fails: rc 1, a plain message, session.json's exit status 1."""
    conv_zoo(tmp_path, {"conv-a": ""})
    hardware = "tests_selftest.fakes:SleepyBackend"
    history = ROOT / ".benchmarks" / "SLEEPY"

    def run(report: str, *args: str) -> subprocess.CompletedProcess:
        command = session_command(tmp_path, hardware, "-m", "performance", *args,
                                  target=str(ROOT / "suites" / "performance"), report=report)
        return subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300,
                              env=python_env())

    saved = run("fast", "--backend-option", "sleep_ms=0", "--benchmark-autosave")
    assert saved.returncode == 0, saved.stdout[-3000:] + saved.stderr[-3000:]
    assert history.is_dir() and not (tmp_path / "fast" / ".benchmarks").exists()
    slow = run("slow", "--backend-option", "sleep_ms=5", "--benchmark-compare",
               "--benchmark-compare-fail=mean:50%")
    out = slow.stdout + slow.stderr
    assert slow.returncode == 1, out[-4000:]
    assert "INTERNALERROR" not in out and "Traceback" not in out
    assert "--benchmark-compare-fail: test_throughput[conv-a-fake-fp32-bs2-offline]" in out
    assert "the saved run had backend options {'sleep_ms': '0'}" in out
    assert json.loads((tmp_path / "slow" / "session.json").read_text())["exit_status"] == 1


REPLAYED = '''
import pytest
from xpuperf.measure.timing import QUERY_LATENCIES, feed_benchmark

LATENCIES_NS = [1_000_000, 3_000_001, 2_500_000, 7]

@pytest.mark.benchmark(timer=QUERY_LATENCIES)
def test_marked(benchmark):
    feed_benchmark(benchmark, LATENCIES_NS)

def test_unmarked(benchmark):
    feed_benchmark(benchmark, LATENCIES_NS)
'''


def test_query_latencies_reach_pytest_benchmark_exactly_through_its_public_api(tmp_path):
    """feed_benchmark's rounds are the engine's latencies bit for bit (timed by
    the marker's replaying timer in benchmark.pedantic); a test without the
    marker fails saying what to add, rather than timing an empty call."""
    (tmp_path / "test_replayed.py").write_text(REPLAYED)
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q",
         "test_replayed.py", "--benchmark-json", "bench.json", "--benchmark-save-data"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
        env=python_env())
    assert done.returncode == 1, done.stdout[-3000:] + done.stderr[-3000:]
    assert "FAILED test_replayed.py::test_unmarked" in done.stdout, done.stdout[-3000:]
    assert "RuntimeError: pytest-benchmark timed the replay with another timer: mark the test " \
           "@pytest.mark.benchmark(timer=xpuperf.measure.timing.QUERY_LATENCIES)" in done.stdout
    benches = json.loads((tmp_path / "bench.json").read_text())["benchmarks"]
    [bench] = [b for b in benches if b["name"] == "test_marked"]
    assert bench["stats"]["data"] == [0.001, 0.003000001, 0.0025, 7e-09]
    assert bench["stats"]["rounds"] == 4 and bench["stats"]["min"] == 7e-09
    assert bench["options"]["timer"] == "loadgen_query_latency"
