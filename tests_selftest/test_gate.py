"""The regression gate (--baseline, --max-regression): pure comparisons, then
whole sessions in which a deliberately slowed backend fails it and an equal run
passes (a backend that sleeps 20 ms per run, so the machine's noise is small
beside the QPS compared; the runs are too short for their p99 to count)."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from xpuperf import gate
from tests_selftest.sessions import run_session, tiny_zoo

SLEEPY = "tests_selftest.fakes:SleepyBackend"
ITEM = "tiny-bert-fake-fp32-bs2-offline"

GATE_TIERS = """\
tiers:
  full:
    perf: {min_time_s: 0.4, min_rounds: 10, warmup_rounds: 1}
    peak_gemm: 64
"""


# --------------------------------------------------------------------------- pure

def perf_record(qps: float, p99: float, **kw) -> dict:
    return {"suite": "performance", "combination": "tiny-bert-fake-fp32", "batch_size": 2,
            "scenario": "offline", "qps": qps, "latency_ms": {"p99": p99}, "queries": 500, **kw}


BASELINE = gate.Baseline(source="old.json", hardware="CPU",
                         perf={ITEM: gate.PerfFigures(qps=1000.0, p99_ms=4.0)},
                         metrics={"bert-torch-squad-fp16": ("F1 Score", 88.0)})


def test_a_regression_beyond_the_limit_fails_with_old_new_and_percentage():
    problems, comparison = gate.check(perf_record(800.0, 4.0), BASELINE, 10)
    assert problems == ["QPS regressed 20.0% against the baseline: 1000 -> 800 samples/s "
                        "(--max-regression 10%)"]
    assert comparison["qps_regression_pct"] == pytest.approx(20.0)
    problems, _ = gate.check(perf_record(1000.0, 5.0), BASELINE, 10)
    assert problems == ["p99 latency regressed 25.0% against the baseline: 4 -> 5 ms "
                        "(--max-regression 10%)"]


def test_within_the_limit_or_better_passes_and_is_compared():
    for qps, p99 in ((950.0, 4.3), (2000.0, 1.0)):
        problems, comparison = gate.check(perf_record(qps, p99), BASELINE, 10)
        assert problems == [] and comparison["qps"] == 1000.0
    assert gate.regression(1000.0, 2000.0, higher_is_better=True) == -100.0


def test_p99_of_a_short_run_is_not_compared():
    problems, comparison = gate.check(perf_record(1000.0, 40.0, queries=30), BASELINE, 10)
    assert problems == [] and comparison["p99_note"].startswith("not compared: 30 queries")


def test_items_the_baseline_lacks_are_not_compared():
    assert gate.check(perf_record(1.0, 99.0, batch_size=4), BASELINE, 10) == ([], {})
    assert gate.check({"suite": "numerics"}, BASELINE, 10) == ([], {})


def test_a_metric_drop_beyond_the_zoos_tolerance_fails():
    rec = {"suite": "metric", "combination": "bert-torch-squad-fp16", "precision": "fp16",
           "primary": "f1", "metrics": {"f1": 86.5}, "max_drop": 1.0}
    problems, comparison = gate.check(rec, BASELINE, 10)
    assert problems == ["f1 dropped 1.500 points against the baseline: 88.000 -> 86.500, "
                        "more than the 1 tolerated for fp16"]
    assert comparison["drop"] == pytest.approx(1.5)
    assert gate.check({**rec, "metrics": {"f1": 87.5}}, BASELINE, 10)[0] == []
    # Another metric than the baseline's is not compared.
    assert gate.check({**rec, "primary": "exact_match", "metrics": {"exact_match": 1.0}},
                      BASELINE, 10) == ([], {})


def test_pytest_benchmark_json_is_read_by_item_id_and_hardware():
    doc = {"machine_info": {"xpuperf": {"hardware": "CPU"}},
           "benchmarks": [{"param": ITEM, "extra_info": {"qps": 10.0, "latency_ms": {"p99": 2.0}}},
                          {"param": "other", "stats": {}}]}
    base = gate.from_benchmark_json(doc, "b.json", "CPU")
    assert base.perf == {ITEM: gate.PerfFigures(10.0, 2.0)}
    with pytest.raises(gate.BaselineError, match="holds a CPU run; this run tests GPU"):
        gate.from_benchmark_json(doc, "b.json", "GPU")
    with pytest.raises(gate.BaselineError, match="not a pytest-benchmark JSON"):
        gate.from_benchmark_json({"rows": []}, "b.json", "CPU")


def test_result_jsons_are_read_for_this_hardware_only():
    docs = [{"Backend": "CPU", "Combination": "tiny-bert-fake-fp32",
             "Performance": [{"BS": 2, "Scenario": "offline", "QPS": 5.0, "P99 Latency": 3.0}],
             "Accuracy": {"Primary Metric": "F1 Score", "F1 Score": 80.0}},
            {"Backend": "GPU", "Combination": "x", "Performance": []}]
    base = gate.from_result_jsons(docs, "reports", "CPU")
    assert base.perf == {ITEM: gate.PerfFigures(5.0, 3.0)}
    assert base.metrics == {"tiny-bert-fake-fp32": ("F1 Score", 80.0)}
    with pytest.raises(gate.BaselineError, match="holds results of CPU, GPU; this run tests NPU"):
        gate.from_result_jsons(docs, "reports", "NPU")


def test_unreadable_baselines_are_named(tmp_path):
    with pytest.raises(gate.BaselineError, match="holds no result"):
        gate.load_baseline(tmp_path, "CPU")
    bad = tmp_path / "b.json"
    bad.write_text("{")
    with pytest.raises(gate.BaselineError, match="is not JSON"):
        gate.load_baseline(bad, "CPU")
    with pytest.raises(gate.BaselineError, match="cannot read"):
        gate.load_baseline(tmp_path / "missing.json", "CPU")


# --------------------------------------------------------------------------- sessions

def run(folder: Path, name: str, sleep_ms: int, *extra: str) -> subprocess.CompletedProcess:
    return run_session(folder, SLEEPY, "-m", "performance", "--backend-option",
                       f"sleep_ms={sleep_ms}", *extra, target="suites/performance", report=name)


@pytest.fixture(scope="module")
def baseline(tmp_path_factory) -> Path:
    """A baseline run, pytest-benchmark enabled: its JSON and its reports folder."""
    folder = tmp_path_factory.mktemp("gate")
    tiny_zoo(folder, GATE_TIERS, samples=16)
    r = run(folder, "baseline", 20, "--benchmark-json", str(folder / "benchmark.json"))
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    return folder


def test_pytest_benchmark_gets_one_round_per_query(baseline):
    bench = json.loads((baseline / "benchmark.json").read_text())["benchmarks"]
    assert [b["param"] for b in bench] == [ITEM]
    stats, extra = bench[0]["stats"], bench[0]["extra_info"]
    assert stats["rounds"] == extra["queries"] >= 10
    assert stats["mean"] * 1e3 == pytest.approx(extra["latency_ms"]["mean"], rel=1e-6)
    assert stats["mean"] >= 0.02  # the sleep


def test_an_equal_run_passes_the_gate(baseline):
    r = run(baseline, "equal", 20, "--baseline", str(baseline / "benchmark.json"),
            "--max-regression", "50", "--benchmark-disable")
    assert r.returncode == 0, r.stdout[-3000:]
    assert "1 item(s) compared, 0 regressed (--max-regression 50%)" in r.stdout


def test_a_slowed_run_fails_the_gate_with_old_new_and_percentage(baseline):
    r = run(baseline, "slowed", 80, "--baseline", str(baseline / "baseline"),
            "--max-regression", "50", "--benchmark-disable")
    assert r.returncode == 1, r.stdout[-3000:]
    assert f"FAILED suites/performance/test_throughput.py::test_throughput[{ITEM}]" in r.stdout
    assert "QPS regressed" in r.stdout and "against the baseline: " in r.stdout
    assert "samples/s (--max-regression 50%)" in r.stdout
    assert "1 item(s) compared, 1 regressed" in r.stdout


def test_gate_options_are_checked(tmp_path):
    tiny_zoo(tmp_path, GATE_TIERS, samples=16)
    r = run(tmp_path, "x", 0, "--max-regression", "5", "--collect-only")
    assert r.returncode == 4 and "--max-regression needs --baseline PATH" in r.stderr
    r = run(tmp_path, "x", 0, "--baseline", str(tmp_path / "nope.json"), "--collect-only")
    assert r.returncode == 4 and "--baseline: cannot read" in r.stderr
