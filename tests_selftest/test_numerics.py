"""Diff statistics and tolerance checks against hand-computed values."""
import math

import numpy as np
import pytest

from xpuperf.conformance.numerics import (DIFF_KEYS, REL_FLOOR, abs_diff_histogram, bound,
                                         check, diff_stats, exceeds_tolerance)


def test_statistics_by_hand():
    ref = np.array([1.0, -2.0, 0.0, 4.0])
    out = np.array([1.5, -2.0, 0.1, 3.0])
    s = diff_stats(ref, out)
    d = np.array([0.5, 0.0, 0.1, 1.0])
    assert s.mean_abs == pytest.approx(d.mean())
    assert s.std_abs == pytest.approx(d.std())
    assert s.max_abs == pytest.approx(1.0)
    # relative: 0.5/1, 0/2, 0.1/floor (reference 0), 1/4
    rel = [0.5, 0.0, 0.1 / REL_FLOOR, 0.25]
    assert s.max_rel == pytest.approx(max(rel))
    assert s.mean_rel == pytest.approx(np.mean(rel))
    assert s.cosine == pytest.approx(ref @ out / (np.linalg.norm(ref) * np.linalg.norm(out)))
    assert (s.nan, s.inf, s.size) == (0, 0, 4)


def test_identical_outputs_pass_every_tolerance():
    x = np.random.default_rng(0).normal(size=(3, 5)).astype(np.float32)
    s = diff_stats(x, x.copy())
    assert s.max_abs == 0 and s.cosine == pytest.approx(1.0)
    assert check("y", s, {"max_abs": 0, "mean_abs": 0, "max_rel": 0, "min_cosine": 0.999999}) == []


def test_nan_and_inf_fail_and_are_never_zeroed():
    ref = np.ones(6)
    out = np.array([1.0, np.nan, np.nan, np.inf, 1.0, 1.0])
    s = diff_stats(ref, out)
    assert (s.nan, s.inf) == (2, 1)
    assert s.max_abs == 0.0  # over the finite values only
    problems = check("logits", s, {"max_abs": 1.0})
    assert problems == ["logits: 2 NaN and 1 Inf values of 6"]


def test_all_nan_output_fails_every_bound():
    s = diff_stats(np.ones(3), np.full(3, np.nan))
    assert math.isnan(s.max_abs) and math.isnan(s.cosine)
    problems = check("y", s, {"max_abs": 1.0, "min_cosine": 0.5})
    assert len(problems) == 3  # the NaNs, and NaN statistics breaking both bounds


def test_tolerance_breaches_name_the_output_and_figures():
    s = diff_stats(np.array([1.0, 2.0]), np.array([1.0, 2.5]))
    problems = check("start_logits", s, {"max_abs": 0.1, "min_cosine": 0.9999})
    assert problems[0] == "start_logits: max_abs 0.5 > 0.1"
    assert problems[1].startswith("start_logits: cosine 0.99")


def test_zero_vectors_agree_and_one_zero_does_not():
    assert diff_stats(np.zeros(3), np.zeros(3)).cosine == 1.0
    assert diff_stats(np.zeros(3), np.ones(3)).cosine == 0.0


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="shape mismatch"):
        diff_stats(np.zeros((2, 3)), np.zeros((3, 2)))


def test_histogram_counts_every_finite_difference_in_decades():
    ref = np.zeros(5)
    out = np.array([0.0, 5e-9, 5e-4, 50.0, 1e6])  # 1e6 lands in the last bin
    h = abs_diff_histogram([(ref, out)])
    assert sum(h["counts"]) == 5
    assert h["counts"][0] == 1  # [0, 1e-9)
    assert h["counts"][1] == 1  # [1e-9, 1e-8)
    assert h["counts"][-1] == 2  # [10, 100] and everything above
    assert all(math.isfinite(e) for e in h["edges"])


def test_exceeds_tolerance():
    tol = {"max_abs": 0.05, "min_cosine": 0.999}
    assert exceeds_tolerance("max_abs", 0.06, tol) and not exceeds_tolerance("max_abs", 0.01, tol)
    assert exceeds_tolerance("cosine", 0.99, tol) and not exceeds_tolerance("cosine", 1.0, tol)
    assert exceeds_tolerance("std_abs", math.nan, tol) and exceeds_tolerance("nan", 1, tol)
    assert not exceeds_tolerance("inf", 0, tol)
    assert not exceeds_tolerance("std_abs", 9.0, tol)  # no tolerance for it
    assert not exceeds_tolerance("max_abs", None, tol)


def test_the_report_marks_what_check_fails():
    """One verdict: the statistics the page marks over tolerance are those check names."""
    ref = np.array([1.0, -2.0, 0.5, 4.0])
    tol = {"max_abs": 0.3, "mean_abs": 0.05, "max_rel": 10.0, "min_cosine": 0.9999}
    for out in (ref + 0.01, ref + np.array([0.0, 0.0, 0.0, 0.4]), -ref, np.full(4, np.nan)):
        stats = diff_stats(ref, out)
        named = {p.split(": ")[1].split(" ")[0] for p in check("y", stats, tol)
                 if " of " not in p}  # the NaN line counts values, not a statistic
        # (a NaN is over any tolerance on the page; check names only bounded ones)
        marked = {k for k in DIFF_KEYS if bound(k, tol) is not None
                  and exceeds_tolerance(k, getattr(stats, k), tol)}
        assert named == marked
    assert named == {"max_abs", "mean_abs", "max_rel", "cosine"}  # the NaN output: all of them
