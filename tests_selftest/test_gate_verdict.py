"""The speed gate's statistics (xpuperf.gate.verdict) on synthetic samples:
the exact rank intervals against published tables, each verdict, the cases
that must come out inconclusive, and the false-alarm and detection rates on
simulated noise of a shared host."""
from __future__ import annotations

import numpy as np
import pytest

from xpuperf.gate import verdict as v


def test_rank_bounds_match_the_published_tables():
    # Mann-Whitney, n = m = 5 at 95 %: the 3rd smallest and largest of 25
    # differences (P(U <= 2) = 4/252); n = m = 10: the 24th (P(U <= 23) = 0.0216).
    assert v._rank_bound(v._mann_whitney_counts(5, 5), 0.95) == 3
    assert v._rank_bound(v._mann_whitney_counts(10, 10), 0.95) == 24
    # Wilcoxon signed rank, n = 10 at 95 %: T <= 8 has probability 0.0244.
    assert v._rank_bound(v._signed_rank_counts(10), 0.95) == 9
    assert sum(v._signed_rank_counts(10)) == 2 ** 10
    assert sum(v._mann_whitney_counts(4, 6)) == 210  # 10 choose 4


@pytest.mark.parametrize("low, high, expected", [
    (12.0, 30.0, "regressed"),  # significant and beyond the threshold
    (2.0, 12.0, "regressed"),  # significant, and a slowdown past T is not ruled out
    (2.0, 8.0, "unchanged"),  # significant but within T
    (-4.0, 4.0, "unchanged"),
    (-12.0, -2.0, "improved"),
    (-3.0, 14.0, "inconclusive"),  # not significant, but could be past T
    (-14.0, 3.0, "inconclusive"),
    (None, None, "inconclusive"),
])
def test_decide(low, high, expected):
    assert v.decide(low, high, 10.0) == expected


def test_a_clear_slowdown_is_regressed_with_its_estimate():
    base = [100.0, 101.0, 99.0, 100.5, 99.5, 100.2, 99.8, 100.1]
    found = v.paired(base, [b * 0.8 for b in base], 10.0)
    assert found.verdict == "regressed"
    assert found.change_pct == pytest.approx(20.0, abs=1e-9)  # exact ratios: no spread
    assert "throughput -20.0% against the baseline" in found.describe()
    found = v.unpaired(base, [b * 1.25 for b in base], 10.0)
    assert found.verdict == "improved" and found.change_pct == pytest.approx(-25.0, abs=1.0)


def test_few_or_noisy_samples_are_inconclusive():
    found = v.paired([100.0] * 4, [80.0] * 4, 5.0)  # 4 pairs: no 95 % interval exists
    assert found.verdict == "inconclusive" and found.low_pct is None
    assert "too few samples" in found.describe()
    rng = np.random.default_rng(3)
    base = 100 * np.exp(rng.normal(0, 0.3, 8))  # +-30 % noise against a 10 % threshold
    found = v.unpaired(base, 100 * np.exp(rng.normal(0, 0.3, 8)), 10.0)
    assert found.verdict == "inconclusive" and "noise" in found.why


def test_bad_samples_are_named():
    with pytest.raises(ValueError, match="candidate throughput samples must be finite and > 0"):
        v.unpaired([1.0, 2.0], [1.0, 0.0], 10.0)
    with pytest.raises(ValueError, match="no baseline samples"):
        v.paired([], [], 10.0)
    with pytest.raises(ValueError, match="as many of each side"):
        v.paired([1.0, 2.0], [1.0], 10.0)
    with pytest.raises(ValueError, match="at most 64"):
        v.unpaired([1.0] * 65, [1.0], 10.0)


def test_false_alarms_and_detection_on_simulated_shared_host_noise():
    """Paired blocks with 4 % noise per block and a drift the pairs share: an
    equal pair is called regressed at most 2.5 % of the time, a 10 % slowdown
    against a 5 % threshold nearly always."""
    rng = np.random.default_rng(7)
    alarms = detected = 0
    for _ in range(200):
        drift = np.exp(np.cumsum(rng.normal(0, 0.05, 12)))  # the machine, shared by a pair
        base = 100 * drift * np.exp(rng.normal(0, 0.04, 12))
        same = 100 * drift * np.exp(rng.normal(0, 0.04, 12))
        slow = 90 * drift * np.exp(rng.normal(0, 0.04, 12))
        alarms += v.paired(base, same, 5.0).verdict == "regressed"
        detected += v.paired(base, slow, 5.0).verdict == "regressed"
    assert alarms <= 8 and detected >= 180, (alarms, detected)
