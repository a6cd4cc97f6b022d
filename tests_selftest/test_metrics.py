"""Task metrics against cases worked by hand (pure functions, no files)."""
from __future__ import annotations

import math

import numpy as np
import pytest

from xpuperf.datasets.criteo import accuracy, roc_auc
from xpuperf.datasets.imagenet import top_k_accuracy
from xpuperf.datasets.squad import best_span, exact_match, f1_score, normalize_answer, squad_metrics


# --------------------------------------------------------------------------- SQuAD

@pytest.mark.parametrize("text, expected", [
    ("The  Cat,  sat!", "cat sat"),
    ("an apple a day", "apple day"),
    ("U.S.A.", "usa"),
    ("theatre", "theatre"),  # an article only as a whole word
    ("  ", ""),
])
def test_normalize_answer(text, expected):
    assert normalize_answer(text) == expected


def test_f1_partial_overlap():
    # pred {quick, brown, fox} vs gold {quick, fox, jumps}: 2 shared, P = R = 2/3
    assert f1_score("the quick brown fox", "quick fox jumps") == pytest.approx(2 / 3)


def test_f1_counts_repeated_tokens_once_per_match():
    # pred {red, red, blue} vs gold {red, blue, blue}: shared red x1 + blue x1, P = R = 2/3
    assert f1_score("red red blue", "red blue blue") == pytest.approx(2 / 3)


def test_f1_unequal_precision_and_recall():
    # pred {old, stone, bridge} vs gold {stone, bridge}: P = 2/3, R = 1, F1 = 0.8
    assert f1_score("the old stone bridge", "stone bridge") == pytest.approx(0.8)


def test_f1_without_overlap_or_prediction_is_zero():
    assert f1_score("blue", "red") == 0.0
    assert f1_score("", "red") == 0.0


def test_exact_match_after_normalization():
    assert exact_match("The Eiffel Tower.", "eiffel tower")
    assert not exact_match("Eiffel Tower in Paris", "eiffel tower")


def test_squad_metrics_max_over_golds_mean_over_questions():
    predictions = ["Paris", "the old stone bridge", "blue"]
    golds = [["paris"], ["stone bridge", "old bridge at tolby"], ["red"]]
    # per question F1: 1, max(0.8, 4/7) = 0.8, 0; EM: 1, 0, 0
    scores = squad_metrics(predictions, golds)
    assert scores["f1"] == pytest.approx(100 * 1.8 / 3)
    assert scores["exact_match"] == pytest.approx(100 / 3)


def test_squad_metrics_needs_one_prediction_per_question():
    with pytest.raises(ValueError, match="one prediction per question"):
        squad_metrics(["a"], [["a"], ["b"]])


def test_best_span_respects_context_order_and_length():
    start = np.array([9.0, 1.0, 5.0, 0.0, 0.0, 0.0])
    end = np.array([9.0, 0.0, 0.0, 4.0, 0.0, 6.0])
    in_context = np.array([False, True, True, True, True, True])  # token 0 is the question
    # start 2 (5) + end 5 (6) spans 4 tokens; allowed only with max_answer_length >= 4
    assert best_span(start, end, in_context, max_answer_length=4)[:2] == (2, 5)
    assert best_span(start, end, in_context, max_answer_length=3)[:2] == (2, 3)
    assert best_span(start, end, np.zeros(6, dtype=bool), max_answer_length=30) is None


# --------------------------------------------------------------------------- ImageNet

def test_top_k_accuracy_hand_case():
    scores = np.array([
        [0.1, 0.7, 0.2, 0.0, 0.0, 0.0],  # label 1: rank 0
        [0.5, 0.1, 0.4, 0.3, 0.2, 0.0],  # label 4: rank 3
        [0.0, 0.1, 0.2, 0.3, 0.4, 0.5],  # label 0: rank 5
    ])
    labels = np.array([1, 4, 0])
    assert top_k_accuracy(scores, labels, 1) == pytest.approx(100 / 3)
    assert top_k_accuracy(scores, labels, 4) == pytest.approx(200 / 3)
    assert top_k_accuracy(scores, labels, 6) == pytest.approx(100.0)


def test_top_k_accuracy_ties_and_nan_are_misses():
    labels = np.array([0, 1])
    assert top_k_accuracy(np.ones((2, 10)), labels, 5) == 0.0
    assert top_k_accuracy(np.full((2, 10), np.nan), labels, 5) == 0.0


# --------------------------------------------------------------------------- Criteo

def test_accuracy_threshold_half():
    # predictions 1, 0 (0.5 is not above the threshold), 0, 0
    assert accuracy(np.array([1, 0, 1, 0]), np.array([0.9, 0.5, 0.4, 0.1])) == pytest.approx(75.0)


def _pairwise_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    pos, neg = scores[labels == 1][:, None], scores[labels == 0][None, :]
    return 100 * ((pos > neg).sum() + 0.5 * (pos == neg).sum()) / (pos.size * neg.size)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_roc_auc_matches_pairwise_count_with_ties(seed):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, size=300)
    scores = np.round(rng.random(300) + 0.3 * labels, 1)  # rounding makes many ties
    assert roc_auc(labels, scores) == pytest.approx(_pairwise_auc(labels, scores))


def test_roc_auc_extremes():
    labels = np.array([0, 0, 1, 1])
    assert roc_auc(labels, np.array([0.1, 0.2, 0.8, 0.9])) == pytest.approx(100.0)
    assert roc_auc(labels, np.array([0.9, 0.8, 0.2, 0.1])) == pytest.approx(0.0)
    assert roc_auc(labels, np.full(4, 0.5)) == pytest.approx(50.0)
    assert math.isnan(roc_auc(np.ones(4), np.arange(4.0)))
