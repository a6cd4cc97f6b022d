"""The regression gate (--baseline, --max-regression, A/B): judging with
synthetic samples (the statistics alone are in test_gate_verdict.py), then
whole sessions in which a deliberately slowed backend fails it and an equal run
passes (a backend that sleeps 20 ms per run, so the machine's noise is small
beside the throughput compared)."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from xpuperf import gate
from tests_selftest.sessions import run_session, tiny_zoo

SLEEPY = "tests_selftest.fakes:SleepyBackend"
ITEM = "tiny-bert-fake-fp32-bs2-offline"

GATE_TIERS = """\
tiers:
  full:
    perf: {min_time_s: 0.4, min_rounds: 10, warmup_rounds: 1, max_spread: 0.5}
    peak_gemm: 64
    gate: {ab_rounds: 8, ab_block_s: 0.1, remeasure: 1}
"""


# --------------------------------------------------------------------------- pure

STEADY = (1000.0, 1010.0, 990.0, 1005.0, 995.0, 1002.0, 998.0, 1008.0, 992.0, 1000.0)


def perf_record(windows, stable=True, **kw) -> dict:
    return {"suite": "performance", "combination": "tiny-bert-fake-fp32", "batch_size": 2,
            "scenario": "offline", "qps": sum(windows) / len(windows), "window_qps": list(windows),
            "stable": stable, "latency_ms": {"p99": 4.0}, "queries": 500, **kw}


BASELINE = gate.Baseline(source="old.json", hardware="CPU",
                         perf={ITEM: gate.PerfFigures(qps=1000.0, p99_ms=4.0, samples=STEADY,
                                                      stable=True)},
                         metrics={"bert-torch-squad-fp16": ("F1 Score", 88.0)})
SETTINGS = gate.GateSettings(threshold_pct=10.0, remeasure=2)


def never() -> dict:
    raise AssertionError("a decided item is not measured again")


def test_a_slowdown_beyond_the_limit_is_regressed_with_its_interval():
    found = gate.against_baseline(ITEM, perf_record([q * 0.8 for q in STEADY]), BASELINE,
                                  SETTINGS, never)
    assert found.verdict.verdict == "regressed" and found.runs == 1
    assert found.record["qps_regression_pct"] == pytest.approx(20.0, abs=1.0)
    assert found.problem("fail").startswith("speed gate: regressed: throughput -20.")
    assert found.record["source"] == "old.json" and found.record["qps"] == 1000.0


def test_an_equal_run_is_unchanged_and_passes():
    found = gate.against_baseline(ITEM, perf_record(STEADY[::-1]), BASELINE, SETTINGS, never)
    assert found.verdict.verdict == "unchanged" and found.problem("fail") == ""


def test_an_undecided_item_is_measured_again_then_inconclusive():
    noisy = [600.0, 1400.0, 700.0, 1300.0, 1000.0]
    calls = []

    def again() -> dict:
        calls.append(1)
        return perf_record(noisy)
    found = gate.against_baseline(ITEM, perf_record(noisy), BASELINE, SETTINGS, again)
    assert len(calls) == SETTINGS.remeasure and found.runs == 3
    assert found.verdict.verdict == "inconclusive"
    assert "--gate-inconclusive=pass" in found.problem("fail")
    assert found.problem("pass") == ""


def test_an_unsteady_run_is_never_judged_as_it_is():
    slow = perf_record([q * 0.5 for q in STEADY], stable=False)
    found = gate.against_baseline(ITEM, slow, BASELINE, SETTINGS, lambda: slow)
    assert found.verdict.verdict == "inconclusive" and found.record["unsteady_runs"] == 3
    assert "unsteady 3 time(s) out of 3" in found.verdict.why
    # A steady re-measurement replaces it.
    found = gate.against_baseline(ITEM, slow, BASELINE, SETTINGS, lambda: perf_record(STEADY))
    assert found.verdict.verdict == "unchanged" and found.record["unsteady_runs"] == 1


def test_a_baseline_without_samples_or_unsteady_is_inconclusive():
    for figures, why in ((gate.PerfFigures(1000.0, 4.0), "keeps no throughput samples"),
                         (gate.PerfFigures(1000.0, 4.0, STEADY, False), "was unsteady")):
        old = gate.Baseline(source="old.json", hardware="CPU", perf={ITEM: figures})
        found = gate.against_baseline(ITEM, perf_record(STEADY), old, SETTINGS, never)
        assert found.verdict.verdict == "inconclusive" and why in found.verdict.why


def test_items_the_baseline_lacks_are_not_compared():
    assert gate.against_baseline("tiny-bert-fake-fp32-bs4-offline", perf_record(STEADY),
                                 BASELINE, SETTINGS, never) is None
    assert gate.check_metric({"suite": "numerics"}, BASELINE) == ([], {})


def test_ab_measures_more_pairs_while_undecided():
    rounds = []

    def measure(n):
        rounds.append(n)
        if len(rounds) == 1:  # noise first, then clean pairs 10 % slower
            return [1000.0, 1000.0, 1000.0, 1000.0], [700.0, 1300.0, 800.0, 1250.0]
        return [1000.0 + i for i in range(n)], [900.0 + i for i in range(n)]
    found = gate.ab(measure, gate.GateSettings(threshold_pct=5.0, ab_rounds=4, remeasure=3))
    # The noisy first pairs stay in the pool: it takes three more measurements.
    assert found.verdict.verdict == "regressed" and found.runs == 4 and rounds == [4] * 4
    assert len(found.record["ab_candidate_qps"]) == 16 and found.record["qps"] == 1001.0


def test_a_metric_drop_beyond_the_zoos_tolerance_fails():
    rec = {"suite": "metric", "combination": "bert-torch-squad-fp16", "precision": "fp16",
           "primary": "f1", "metrics": {"f1": 86.5}, "max_drop": 1.0}
    problems, comparison = gate.check_metric(rec, BASELINE)
    assert problems == ["f1 dropped 1.500 points against the baseline: 88.000 -> 86.500, "
                        "more than the 1 tolerated for fp16"]
    assert comparison["drop"] == pytest.approx(1.5)
    assert gate.check_metric({**rec, "metrics": {"f1": 87.5}}, BASELINE)[0] == []
    # Another metric than the baseline's is not compared.
    assert gate.check_metric({**rec, "primary": "exact_match", "metrics": {"exact_match": 1.0}},
                             BASELINE) == ([], {})


def test_pytest_benchmark_json_is_read_by_item_id_and_hardware():
    doc = {"machine_info": {"xpuperf": {"hardware": "CPU"}},
           "benchmarks": [{"param": ITEM, "extra_info": {"qps": 10.0, "latency_ms": {"p99": 2.0},
                                                         "window_qps": [9.0, 11.0, "x", -1],
                                                         "stable": True}},
                          {"param": "other", "stats": {}}]}
    base = gate.baseline.from_benchmark_json(doc, "b.json", "CPU")
    assert base.perf == {ITEM: gate.PerfFigures(10.0, 2.0, (9.0, 11.0), True)}
    with pytest.raises(gate.BaselineError, match="holds a CPU run; this run tests GPU"):
        gate.baseline.from_benchmark_json(doc, "b.json", "GPU")
    with pytest.raises(gate.BaselineError, match="not a pytest-benchmark JSON"):
        gate.baseline.from_benchmark_json({"rows": []}, "b.json", "CPU")


def test_result_jsons_are_read_for_this_hardware_only():
    docs = [{"Backend": "CPU", "Combination": "tiny-bert-fake-fp32",
             "Performance": [{"BS": 2, "Scenario": "offline", "QPS": 5.0, "P99 Latency": 3.0,
                              "Window QPS": [4.0, 6.0], "Steady": False}],
             "Accuracy": {"Primary Metric": "F1 Score", "F1 Score": 80.0}},
            {"Backend": "GPU", "Combination": "x", "Performance": []}]
    base = gate.baseline.from_result_jsons(docs, "reports", "CPU")
    assert base.perf == {ITEM: gate.PerfFigures(5.0, 3.0, (4.0, 6.0), False)}
    assert base.metrics == {"tiny-bert-fake-fp32": ("F1 Score", 80.0)}
    with pytest.raises(gate.BaselineError, match="holds results of CPU, GPU; this run tests NPU"):
        gate.baseline.from_result_jsons(docs, "reports", "NPU")


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
    assert ("speed gate against baseline " in r.stdout and "1 item(s) compared: 0 regressed, "
            "0 improved, 1 unchanged, 0 inconclusive (--max-regression 50%)" in r.stdout)


def test_a_slowed_run_fails_the_gate_with_old_new_and_percentage(baseline):
    r = run(baseline, "slowed", 80, "--baseline", str(baseline / "baseline"),
            "--max-regression", "50", "--benchmark-disable")
    assert r.returncode == 1, r.stdout[-3000:]
    assert f"FAILED suites/performance/test_throughput.py::test_throughput[{ITEM}]" in r.stdout
    # 20 ms -> 80 ms a run: well past the 50 % threshold, its interval too.
    low = re.search(r"speed gate: regressed: throughput -(\d+)\.\d% against the baseline "
                    r"\(95% CI -\d+\.\d% to -(\d+)\.\d%", r.stdout)
    assert low and int(low.group(2)) >= 50, r.stdout[-3000:]
    assert "1 item(s) compared: 1 regressed" in r.stdout
    result = json.loads(next((baseline / "slowed").rglob("result-fp32.json")).read_text())
    assert len(result["Performance"][0]["Window QPS"]) == 5  # the tier's windows, kept


def test_ab_in_one_session_fails_a_slower_candidate(tmp_path):
    """The candidate (sleep_ms=20) and the A/B baseline (sleep_ms=10) measured in
    interleaved blocks in one session: regressed, the blocks in the record."""
    tiny_zoo(tmp_path, GATE_TIERS, samples=16)
    r = run(tmp_path, "ab", 20, "--ab-baseline-option", "sleep_ms=10", "--benchmark-disable")
    assert r.returncode == 1, r.stdout[-3000:] + r.stderr[-2000:]
    assert "speed gate: regressed: throughput -" in r.stdout
    assert ("speed gate against A/B baseline sleep_ms=10: 1 item(s) compared: 1 regressed"
            in r.stdout)


def test_gate_options_are_checked(tmp_path):
    tiny_zoo(tmp_path, GATE_TIERS, samples=16)
    r = run(tmp_path, "x", 0, "--max-regression", "5", "--collect-only")
    assert r.returncode == 4 and "--max-regression needs --baseline PATH" in r.stderr
    r = run(tmp_path, "x", 0, "--ab-baseline-option", "sleep_ms", "--collect-only")
    assert r.returncode == 4 and "argument --ab-baseline-option: 'sleep_ms': expected KEY=VALUE" in r.stderr
    r = run(tmp_path, "x", 0, "--ab-baseline-option", "a=1", "--baseline", "b.json",
            "--collect-only")
    assert r.returncode == 4 and "use one" in r.stderr
    r = run(tmp_path, "x", 0, "--zoo-tier", "smoke", "--ab-baseline-option", "sleep_ms=1",
            "--collect-only")
    assert r.returncode == 0 and "the smoke tier is not for gating" in r.stdout
    r = run(tmp_path, "x", 0, "--baseline", str(tmp_path / "nope.json"), "--collect-only")
    assert r.returncode == 4 and "--baseline: cannot read" in r.stderr


def test_an_ab_baseline_worker_of_another_interpreter_speaks_the_same_protocol(tmp_path):
    """--ab-baseline-python / --ab-baseline-path: a fresh interpreter, the
    folder first on its import path, answering and dying as a forked worker."""
    from xpuperf.worker.process import Worker, WorkerLost

    worker = Worker("tests_selftest.faulty_backends:EchoHost", {}, name="spawned worker",
                    python=sys.executable, path=str(tmp_path))
    try:
        assert worker.call("echo", 60, value={"a": [1, 2]}) == {"a": [1, 2]}
        seen = worker.call("where", 10, variable="PYTHONPATH")
        assert seen["value"].split(os.pathsep)[0] == str(tmp_path)
        assert str(tmp_path) in seen["path"] and seen["cwd"] == os.getcwd()
        with pytest.raises(WorkerLost, match="killed by SIGSEGV while about to crash"):
            worker.call("crash", 10)
    finally:
        worker.close()
