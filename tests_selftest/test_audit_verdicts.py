"""LoadGen's integrity audits (xpuperf.measure.audits): pure verdicts on made-up
measurements, the drivers on a fake model, and whole sessions in which each
cheating backend of tests_selftest/fakes.py is caught by its audit while an
honest one passes all three."""
from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest

from xpuperf.measure import audits
from xpuperf.measure.audits import Timings
from tests_selftest.sessions import run_session, tiny_zoo

COMBO = "tiny-bert-fake-fp32"

AUDIT_TIERS = """\
tiers:
  full:
    perf: {min_time_s: 0.05, min_rounds: 5, warmup_rounds: 1}
    audits: {rounds: 12, block: 4}
    peak_gemm: 64
"""


# --------------------------------------------------------------------------- verdicts

def timings(ms: np.ndarray, cpu_share: float = 1.0) -> Timings:
    wall = (np.asarray(ms, dtype=np.float64) * 1e6).astype(np.int64)
    return Timings(wall, (wall * cpu_share).astype(np.int64))


def noisy(rounds: int, block: int, seed: int, scale: float = 1.0) -> np.ndarray:
    """Query times of an honest side on a busy machine: 1 ms, often much slower."""
    rng = np.random.default_rng(seed)
    base = np.full((rounds, block), scale)
    return base * (1 + rng.exponential(0.3, (rounds, block)) * (rng.random((rounds, block)) < 0.4))


def test_accuracy_passes_equal_outputs_nan_included_and_fails_stale_ones():
    a = {"logits": np.array([[0.5, np.nan], [1.0, -2.0]], dtype=np.float32)}
    assert audits.accuracy_verdict([(a, {"logits": a["logits"].copy()})]).passed
    stale = {"logits": np.array([[0.4, np.nan], [1.0, -2.0]], dtype=np.float32)}
    v = audits.accuracy_verdict([(a, a), (stale, a)])
    assert not v.passed and v.figures["mismatched_queries"] == 1
    assert v.message.startswith("1 of 2 queries logged during a performance run differ from "
                                "accuracy mode (worst: logits, max |diff| 5% of the output's scale")
    assert not audits.accuracy_verdict([({"logits": a["logits"][:1]}, a)]).passed  # shape


def test_caching_fails_a_cache_and_passes_honest_noise():
    honest = [audits.caching_verdict(timings(noisy(16, 4, s)), timings(noisy(16, 4, s + 100)))
              for s in range(20)]
    assert all(v.passed for v in honest)
    cached = audits.caching_verdict(timings(noisy(16, 4, 1, scale=0.01)), timings(noisy(16, 4, 2)))
    assert not cached.passed and cached.figures["rounds_over_bound"] == 16
    assert "faster than distinct samples in 16 of 16 rounds" in cached.message
    assert cached.message.endswith("results are cached")


def test_a_modest_gain_in_every_round_fails_caching():
    v = audits.caching_verdict(timings(np.full((16, 4), 1.0)), timings(np.full((16, 4), 1.15)))
    assert not v.passed and v.figures["speedup"] == pytest.approx(0.15)


def test_seed_fails_either_way_and_passes_honest_noise():
    assert all(audits.seed_verdict(timings(noisy(16, 8, s)), timings(noisy(16, 8, s + 50))).passed
               for s in range(20))
    tuned = audits.seed_verdict(timings(noisy(16, 8, 1, scale=0.05)), timings(noisy(16, 8, 2)))
    assert not tuned.passed and "ran more than 5% slower in 16 of 16 rounds" in tuned.message
    faster = audits.seed_verdict(timings(np.full((16, 8), 1.0)), timings(np.full((16, 8), 0.8)))
    assert not faster.passed and "faster" in faster.message


def test_cpu_time_is_compared_where_the_host_does_the_work():
    wall = noisy(16, 4, 3) * 5  # the machine was busy, ...
    cpu = np.ones((16, 4))  # ... the work was the same
    busy = Timings((wall * 1e6).astype(np.int64), (cpu * 1e6).astype(np.int64))
    idle = timings(np.ones((16, 4)))
    assert audits.caching_verdict(idle, busy).figures["basis"] == "wall"  # cpu < half the wall
    host = timings(np.ones((16, 4)), cpu_share=0.9)
    assert audits.caching_verdict(host, timings(np.ones((16, 4)) * 1.01, 0.9)).figures["basis"] == "cpu"


def test_sign_test_rounds():
    assert audits.sign_test_rounds(16, 0.01) == 14  # P(X >= 14) = 0.2 %, P(X >= 13) = 1.1 %
    assert audits.sign_test_rounds(8, 0.01) == 8
    assert audits.sign_test_rounds(4, 0.01) == 5  # cannot be shown


def test_confirmed_fails_only_when_every_attempt_fails():
    outcomes = iter([False, True])
    v = audits.confirmed(lambda a: audits.Verdict("seed", next(outcomes), "m", {"a": a}))
    assert v.passed and v.figures == {"a": 1, "attempts": 2}
    v = audits.confirmed(lambda a: audits.Verdict("seed", False, "why", {}))
    assert not v.passed and v.message == "why" and v.figures["attempts"] == audits.ATTEMPTS


def test_distinct_batches_never_repeat_and_say_when_too_few():
    got = audits.distinct_index_batches(16, 2, 100, seed=0, exclude=(0, 0))
    assert len(set(got)) == 100 and (0, 0) not in got
    few = audits.distinct_index_batches(4, 2, 15, seed=0, exclude=(0, 0))  # listed, shuffled
    assert sorted(few) == sorted(t for t in np.ndindex(4, 4) if t != (0, 0))
    assert audits.distinct_index_batches(4, 2, 16, seed=0, exclude=(0, 0)) is None


def test_alternating_blocks_times_each_side_in_turn_after_an_untimed_warm_up():
    seen: list[str] = []
    sides = {"a": lambda r: [{"x": np.array([f"a{r}"])}] * 2,
             "b": lambda r: [{"x": np.array([f"b{r}"])}] * 2}
    t = audits.alternating_blocks(lambda f: seen.append(str(f["x"][0])) or {}, sides, 3)
    assert seen == ["a-1"] * 2 + ["b-1"] * 2 + ["a0", "a0", "b0", "b0", "b1", "b1", "a1", "a1",
                                                "a2", "a2", "b2", "b2"]
    assert t["a"].wall_ns.shape == t["b"].cpu_ns.shape == (3, 2)


def test_logged_performance_run_keeps_measured_outputs_of_their_batch():
    batches = [{"x": np.full((2, 1), b, np.float32)} for b in range(3)]
    logged = audits.logged_performance_run(lambda f: {"y": f["x"] * 10}, batches, 2, 40, seed=0)
    assert len(logged) == audits.LOGGED_QUERIES
    assert all(np.all(out["y"] == 10 * b) for b, out in logged)


# --------------------------------------------------------------------------- sessions

@pytest.fixture(scope="module")
def zoo_folder(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("audits")
    return tiny_zoo(folder, AUDIT_TIERS, samples=16)


def run_audits(folder: Path, hardware: str) -> subprocess.CompletedProcess:
    return run_session(folder, hardware, "-rA", "--benchmark-disable")


def audit_line(outcome: str, audit: str) -> str:
    return f"{outcome} suites/performance/test_audits.py::test_audit_{audit}[{COMBO}]"


def test_an_honest_backend_passes_every_audit(zoo_folder):
    r = run_audits(zoo_folder, "CPU")
    assert r.returncode == 0, r.stdout[-3000:]
    assert all(audit_line("PASSED", a) in r.stdout for a in ("accuracy", "caching", "seed"))


@pytest.mark.parametrize("fake,audit,message", [
    ("CachingBackend", "caching", "faster than distinct samples in 12 of 12 rounds"),
    ("StaleBackend", "accuracy", "queries logged during a performance run differ from accuracy mode"),
    ("OrderTunedBackend", "seed", "the system is tuned to the default order"),
])
def test_a_cheating_backend_is_caught_by_its_audit(zoo_folder, fake, audit, message):
    r = run_audits(zoo_folder, f"tests_selftest.fakes:{fake}")
    assert r.returncode == 1, r.stdout[-3000:]
    assert audit_line('FAILED', audit) in r.stdout and message in r.stdout
    # Its outputs are right: the accuracy suite cannot see it, only its audit does.
    assert "FAILED suites/accuracy" not in r.stdout
    if audit != "accuracy":
        assert audit_line("PASSED", "accuracy") in r.stdout
