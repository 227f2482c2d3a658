"""The evaluation metrics (numpy only) on hand-made rankings and sets."""

from __future__ import annotations

import numpy as np
import pytest

from poster_genres.decision import DecisionRule
from training import metrics


def test_average_precision_and_auc_on_known_rankings() -> None:
    assert metrics.average_precision(np.array([1, 0, 1, 0]), np.array([0.9, 0.8, 0.7, 0.1])) == (
        pytest.approx((1 + 2 / 3) / 2)
    )
    assert metrics.roc_auc(np.array([1, 0, 1, 0]), np.array([0.9, 0.8, 0.7, 0.1])) == 0.75
    assert metrics.roc_auc(np.array([1, 0]), np.array([0.5, 0.5])) == 0.5
    assert np.isnan(metrics.average_precision(np.array([0, 0]), np.array([0.1, 0.2])))


def test_constant_scores_get_the_frequency_as_ap() -> None:
    truth = np.array([1, 0, 0, 0, 1, 0, 0, 0, 0, 0])
    assert metrics.average_precision(truth, np.full(10, 0.3)) == pytest.approx(0.2, abs=0.05)


def test_thresholds_maximise_f1_and_fall_back_for_rare_genres() -> None:
    truth = np.array([[1, 1], [1, 0], [0, 0], [0, 0]])
    probs = np.array([[0.9, 0.8], [0.6, 0.1], [0.4, 0.2], [0.1, 0.3]])
    thresholds = metrics.tune_thresholds(truth, probs, min_positives=2)
    assert thresholds[0] == 0.6  # both positives, no negative: F1 = 1
    assert thresholds[1] == metrics.FALLBACK_THRESHOLD  # one positive: too few to tune


def test_score_reports_every_headline_figure() -> None:
    truth = np.array([[1, 0, 0], [0, 1, 0], [1, 1, 0]])
    probs = np.array([[0.8, 0.1, 0.1], [0.2, 0.7, 0.1], [0.6, 0.6, 0.2]])
    result = metrics.score(truth, probs, np.full(3, 0.5), ["a", "b", "c"])
    assert result["mAP"] == 1.0  # the genre with no positive is left out of the mean
    assert result["micro_F1"] == 1.0 and result["macro_F1"] == 1.0
    assert result["n_images"] == 3
    assert result["precision_at_3"] == pytest.approx(4 / 9)
    assert result["brier"] == pytest.approx(float(np.mean((probs - truth) ** 2)))


def test_macro_map_is_not_micro_ap() -> None:
    # Genre a is ranked perfectly; genre b is ranked backwards. Pooled, the two blur together.
    truth = np.array([[1, 0], [1, 0], [0, 1], [0, 0]])
    probs = np.array([[0.9, 0.8], [0.8, 0.7], [0.1, 0.2], [0.2, 0.9]])
    macro = metrics.mean_average_precision(truth, probs)
    assert macro == pytest.approx((1.0 + 1 / 4) / 2)  # b's only positive is ranked last
    assert metrics.score(truth, probs, np.full(2, 0.5), ["a", "b"])["mAP"] == pytest.approx(macro)
    micro = metrics.average_precision(truth.ravel(), probs.ravel())
    # Pooled, ties put negatives first: positives at ranks 2, 4 and 7 of 8.
    assert micro == pytest.approx(np.mean([1 / 2, 2 / 4, 3 / 7]))
    assert abs(macro - micro) > 0.05


def test_set_scores_of_predicted_lists() -> None:
    truth = np.array([[1, 1, 0], [0, 0, 1], [1, 0, 0]], dtype=bool)
    chosen = np.array([[1, 0, 0], [0, 1, 1], [0, 0, 0]], dtype=bool)
    figures = metrics.set_scores(truth, chosen)
    assert figures["precision"] == pytest.approx(2 / 3)
    assert figures["recall"] == pytest.approx(2 / 4)
    assert figures["micro_F1"] == pytest.approx(2 * 2 / (2 * 2 + 1 + 2))
    # Per genre F1: a 2/3, b 0, c 1.
    assert figures["macro_F1"] == pytest.approx((2 / 3 + 0 + 1) / 3)
    assert figures["mean_predicted"] == pytest.approx(1.0)


def test_decision_scores_report_the_lowest_shown_probability_and_empty_lists() -> None:
    rule = DecisionRule.build(["a", "b"], [0.3, 0.3], [True, True])
    probs = np.array([[0.5, 0.12], [0.05, 0.02]])
    figures = metrics.decision_scores(np.array([[1, 0], [0, 1]]), probs, rule)
    assert figures["min_predicted_probability"] == 0.5
    assert figures["empty_share"] == 0.5
