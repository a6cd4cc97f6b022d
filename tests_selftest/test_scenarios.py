"""Scenarios as zoo data: their settings validated with file:line, the items they
expand to per tier, the engine running each one, and the peak-memory probe."""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from xpuperf.measure import loadgen, memory, timing
from xpuperf.worker import devices
from xpuperf.zoo import ScenarioSpec, ZooError, parse_zoo

ROOT = Path(__file__).resolve().parents[1]

SCENARIOS = """\
  scenarios:
    - offline
    - {scenario: single_stream, batch_sizes: min}
    - {scenario: multi_stream, samples_per_query: 8}
    - {scenario: server, batch_sizes: [2], load: 0.5, latency_bound_ms: 50}
    - {scenario: multi_client, batch_sizes: max, clients: 3}
"""
ZOO = """\
defaults:
  tolerances: {fp32: {max_abs: 1.0e-3}}
""" + SCENARIOS + """\
tiers:
  smoke:
    scenarios: {offline: max, server: all}
    audits: {rounds: 8, block: 2}
datasets:
  fake: {id: fake, format: fake}
models:
  m:
    family: bert
    framework: torch
    domain: nlp
    builder: bert_qa
    dataset: fake
    inputs:
      - {name: input_ids, shape: [batch, 4], dtype: int64}
    outputs: [start_logits]
    batch_sizes: [2, 8, 16]
"""


def test_scenarios_resolve_their_batch_sizes_and_settings():
    zoo = parse_zoo(ZOO, "full")
    specs = {s.name: s for s in zoo.models[0].scenarios}
    assert specs["offline"] == ScenarioSpec("offline", (2, 8, 16))
    assert specs["single_stream"].batch_sizes == (2,)
    assert specs["multi_stream"].batch_sizes == (8,)
    assert specs["server"] == ScenarioSpec("server", (2,), latency_bound_ms=50.0, load=0.5)
    assert specs["multi_client"] == ScenarioSpec("multi_client", (16,), clients=3)
    assert zoo.scenarios is None and zoo.audits is None  # the full tier filters nothing
    assert [p.id for p in zoo.perf_cases()] == [
        "m-fake-fp32-bs2-offline", "m-fake-fp32-bs8-offline", "m-fake-fp32-bs16-offline",
        "m-fake-fp32-bs2-single_stream", "m-fake-fp32-bs8-multi_stream",
        "m-fake-fp32-bs2-server", "m-fake-fp32-bs16-multi_client"]


def test_a_tier_picks_scenarios_and_batch_sizes():
    zoo = parse_zoo(ZOO, "smoke")
    assert zoo.audits == {"rounds": 8, "block": 2}
    assert [p.id for p in zoo.perf_cases()] == ["m-fake-fp32-bs16-offline", "m-fake-fp32-bs2-server"]
    assert len(zoo.perf_cases({"multi_client": "all", "offline": "min"})) == 2


def test_a_model_without_scenarios_runs_offline_at_every_batch_size():
    zoo = parse_zoo(ZOO.replace(SCENARIOS, ""), "full")
    assert [p.id for p in zoo.perf_cases()] == ["m-fake-fp32-bs2-offline", "m-fake-fp32-bs8-offline",
                                               "m-fake-fp32-bs16-offline"]


@pytest.mark.parametrize("old,new,expected", [
    ("- offline", "- offlin",
     "zoo.yaml:4: defaults.scenarios[0].scenario: unknown scenario 'offlin'"),
    ("clients: 3", "clients: 3, load: 0.5",
     "zoo.yaml:8: defaults.scenarios[4].load: applies to the server scenario only, not multi_client"),
    (", latency_bound_ms: 50", "",
     "zoo.yaml:7: defaults.scenarios[3]: the server scenario needs 'latency_bound_ms'"),
    ("load: 0.5", "load: 1.5",
     "defaults.scenarios[3].load: is the target rate as a fraction of the offline throughput"),
    ("latency_bound_ms: 50", "latency_bound_ms: 0",
     "defaults.scenarios[3].latency_bound_ms: must be > 0, got 0"),
    ("clients: 3", "clients: 0", "defaults.scenarios[4].clients: must be a positive integer"),
    ("samples_per_query: 8", "samples_per_query: 4",
     "zoo.yaml:6: defaults.scenarios[2].samples_per_query: 4 is not a batch size of models.m (2, 8, 16)"),
    ("samples_per_query: 8", "samples_per_query: 8, batch_sizes: max",
     "give it or batch_sizes, not both"),
    ("batch_sizes: [2]", "batch_sizes: [3]",
     "defaults.scenarios[3].batch_sizes[0]: 3 is not a batch size of models.m"),
    ("batch_sizes: min}", "batch_sizes: smallest}",
     "defaults.scenarios[1].batch_sizes: unknown batch size pick 'smallest' (known: all, min, max)"),
    ("{offline: max, server: all}", "{offline: max, sever: all}",
     "zoo.yaml:11: tiers.smoke.scenarios: unknown scenario 'sever'"),
    ("{rounds: 8, block: 2}", "{rounds: 4, block: 2}",
     "zoo.yaml:12: tiers.smoke.audits.rounds: must be at least 8"),
    ("{rounds: 8, block: 2}", "{block: 2}", "tiers.smoke.audits: missing required field 'rounds'"),
])
def test_scenario_and_tier_errors_name_line_and_field(old, new, expected):
    assert old in ZOO
    with pytest.raises(ZooError) as e:
        parse_zoo(ZOO.replace(old, new, 1), "full")
    assert expected in str(e.value)


def test_a_models_own_scenarios_are_blamed_on_the_model():
    text = ZOO.replace("    batch_sizes: [2, 8, 16]\n",
                       "    batch_sizes: [2, 8, 16]\n    scenarios: [{scenario: server}]\n")
    with pytest.raises(ZooError, match=r"zoo.yaml:\d+: models.m.scenarios\[0\]: the server scenario "
                                       "needs 'latency_bound_ms'"):
        parse_zoo(text, "full")


# --------------------------------------------------------------------------- engine

QUICK = timing.run_settings({"min_time_s": 0.02, "min_rounds": 5, "warmup_rounds": 1})


@pytest.mark.parametrize("spec,engine_name", [
    (ScenarioSpec("offline", (2,)), "offline"),
    (ScenarioSpec("single_stream", (2,)), "single-stream"),
    (ScenarioSpec("multi_stream", (2,)), "multi-stream"),
    (ScenarioSpec("multi_client", (2,), clients=2), "multi-client"),
    (ScenarioSpec("server", (2,), latency_bound_ms=1000.0, load=0.5), "server"),
])
def test_every_scenario_runs_on_the_engine(spec, engine_name):
    asked: list[str] = []

    def capacity(again: bool) -> float:
        asked.append("capacity again" if again else "capacity")
        return 2000.0

    result, runs = timing.run_scenario(spec, lambda k: None, 2, QUICK, capacity)
    assert result.scenario == engine_name and result.queries >= 5 and runs == 1
    assert asked == (["capacity"] if spec.name == "server" else [])
    if spec.name == "server":
        assert result.target_qps == 1000.0 and result.valid
    if spec.name == "multi_client":
        assert result.clients == 2


def test_an_invalid_server_run_is_run_again():
    def over_the_bound(k: int) -> None:
        time.sleep(0.0005)

    spec = ScenarioSpec("server", (1,), latency_bound_ms=0.001, load=1.0)
    result, runs = timing.run_scenario(spec, over_the_bound, 1, QUICK, lambda again: 1000.0)
    assert runs == timing.SERVER_RUNS and result.valid is False


def test_a_server_run_again_takes_its_rate_from_the_host_as_it_is_now():
    """The offline item measured 2,000 samples/s; since then the host has slowed
    (a query takes 2 ms: 500/s at most), so half the old throughput, 1,000/s,
    backs up every query past the bound. The run again is at half of what the
    host sustains now, and meets the bound: a verdict on the SUT, not on when
    its neighbours were busy."""
    asked: list[bool] = []

    def slowed(k: int) -> None:
        time.sleep(0.002)

    # 0.3 s at 1,000 queries/s leaves the last of them 300 ms behind.
    settings = timing.run_settings({"min_time_s": 0.3, "min_rounds": 5, "warmup_rounds": 1})

    def capacity(again: bool) -> float:
        asked.append(again)
        return loadgen.run_offline(slowed, 1, settings).qps if again else 2000.0

    spec = ScenarioSpec("server", (1,), latency_bound_ms=100.0, load=0.5)
    result, runs = timing.run_scenario(spec, slowed, 1, settings, capacity)
    assert asked == [False, True] and runs == 2
    assert result.valid and result.target_qps < 300, result.target_qps


def test_a_latency_failure_beside_other_xdist_workers_says_so():
    workers = devices.xdist_workers
    assert timing.shared_host(workers({})) == \
        timing.shared_host(workers({"PYTEST_XDIST_WORKER_COUNT": "1"})) == ""
    assert timing.shared_host(workers({"PYTEST_XDIST_WORKER_COUNT": "3"})).startswith(
        " (timed beside 2 other pytest-xdist worker(s), which share this host's CPU")


def test_run_settings_come_from_the_tier_with_defaults():
    s = timing.run_settings({"min_time_s": 0.3, "min_rounds": 5})
    assert (s.min_duration_s, s.min_queries, s.warmup_queries, s.windows) == (0.3, 5, 1, 5)


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="Linux only")
def test_peak_rss_sees_a_spike_that_is_gone_by_the_end():
    with memory.PeakRSS() as before:
        pass
    with memory.PeakRSS() as peak:
        block = np.ones(64 * 2**20 // 8)  # 64 MiB, touched
        del block
    assert peak.method == "vmhwm" and peak.mb - before.mb > 50


# --------------------------------------------------------------------------- plugin

def collect(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "suites",
                           "--collect-only", "-q", "--zoo-tier", "smoke", *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_scenarios_option_overrides_the_tier():
    r = collect("--scenarios", "all", "-k", "test_throughput and bert-torch-squad-fp32")
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    ids = {line.split("-", 4)[-1].rstrip("]") for line in r.stdout.splitlines() if "::" in line}
    assert ids == {"bs1-offline", "bs4-offline", "bs1-single_stream", "bs4-multi_stream",
                   "bs1-server", "bs4-multi_client"}
    # An LLM workload runs the named scenarios of its own (and its accuracy item).
    r = collect("--scenarios", "offline,single_stream", "-k", "test_generate and gpt2-fp32")
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    ids = {line.split("[", 1)[1].rstrip("]") for line in r.stdout.splitlines() if "::" in line}
    assert ids and not any(i.endswith("-server") for i in ids), ids
    assert any(i.endswith("-single_stream") for i in ids) and "gpt2-fp32" in ids, ids
    r = collect("--scenarios", "offline,sever")
    assert r.returncode == 4 and "argument --scenarios: unknown 'sever'" in r.stderr
