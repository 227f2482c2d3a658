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


def brute_auc(truth: np.ndarray, scores: np.ndarray) -> float:
    """Every positive-negative pair: 1 if the positive scores higher, 1/2 for a tie."""
    pos, neg = scores[truth == 1], scores[truth == 0]
    wins = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


def brute_ap(truth: np.ndarray, scores: np.ndarray) -> float:
    """Mean precision at each positive, ranked by score; inside a tie every negative comes first
    and the tied positives follow in their original order (the pessimistic convention)."""
    precisions = []
    for i in np.flatnonzero(truth):
        above = scores > scores[i]
        tied = scores == scores[i]
        tied_positives_before = (tied & (truth == 1) & (np.arange(len(truth)) < i)).sum()
        rank = above.sum() + (tied & (truth == 0)).sum() + tied_positives_before + 1
        hits = (above & (truth == 1)).sum() + tied_positives_before + 1
        precisions.append(hits / rank)
    return float(np.mean(precisions))


def brute_threshold(truth: np.ndarray, scores: np.ndarray) -> float:
    """The highest score whose ">= it" rule gives the best F1."""
    best, best_f1 = scores.max(), -1.0
    for t in sorted(set(scores.tolist()), reverse=True):
        chosen = scores >= t
        tp = (chosen & (truth == 1)).sum()
        f1 = 2 * tp / (2 * tp + (chosen & (truth == 0)).sum() + (~chosen & (truth == 1)).sum())
        if f1 > best_f1:
            best, best_f1 = t, f1
    return float(best)


def sample(seed: int, n: int = 40, genres: int = 4) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    truth = (rng.random((n, genres)) < [0.5, 0.25, 0.1, 0.6]).astype(np.uint8)
    scores = np.round(np.clip(truth * 0.25 + rng.random((n, genres)) * 0.8, 0, 1), 1)  # ties
    return truth, scores


@pytest.mark.parametrize("seed", range(5))
def test_auc_and_ap_agree_with_brute_force_on_unbalanced_tied_data(seed: int) -> None:
    truth, scores = sample(seed)
    for j in range(truth.shape[1]):
        if not 0 < truth[:, j].sum() < len(truth):
            continue  # undefined; the NaN case has its own test
        assert metrics.roc_auc(truth[:, j], scores[:, j]) == pytest.approx(
            brute_auc(truth[:, j], scores[:, j])
        )
        assert metrics.average_precision(truth[:, j], scores[:, j]) == pytest.approx(
            brute_ap(truth[:, j], scores[:, j])
        )


@pytest.mark.parametrize("seed", range(5))
def test_tuned_thresholds_are_the_brute_force_optimum(seed: int) -> None:
    truth, scores = sample(seed)
    tuned = metrics.tune_thresholds(truth, scores, min_positives=1)
    assert tuned.dtype == np.float64
    for j in range(truth.shape[1]):
        expected = brute_threshold(truth[:, j], scores[:, j]) if truth[:, j].any() else 0.5
        assert tuned[j] == expected


def test_score_pins_every_figure_and_the_per_genre_rows() -> None:
    truth, scores = sample(7, n=30, genres=4)
    thresholds = np.array([0.5, 0.6, 0.4, 0.7])
    result = metrics.score(truth, scores, thresholds, ["a", "b", "c", "d"])
    chosen = scores >= thresholds
    for j, row in enumerate(result["per_genre"]):
        tp = (chosen[:, j] & (truth[:, j] == 1)).sum()
        fp = (chosen[:, j] & (truth[:, j] == 0)).sum()
        fn = (~chosen[:, j] & (truth[:, j] == 1)).sum()
        assert row == {
            "genre": "abcd"[j],
            "positives": int(truth[:, j].sum()),
            "AP": pytest.approx(brute_ap(truth[:, j], scores[:, j])),
            "AUC": pytest.approx(brute_auc(truth[:, j], scores[:, j])),
            "F1": pytest.approx(2 * tp / (2 * tp + fp + fn)),
            "threshold": thresholds[j],
        }
    tp = (chosen & (truth == 1)).sum()
    fp, fn = (chosen & (truth == 0)).sum(), (~chosen & (truth == 1)).sum()
    assert result["micro_F1"] == pytest.approx(2 * tp / (2 * tp + fp + fn))
    assert result["micro_AP"] == pytest.approx(brute_ap(truth.ravel(), scores.ravel()))
    assert result["macro_AUC"] == pytest.approx(np.mean([r["AUC"] for r in result["per_genre"]]))
    assert result["macro_F1"] == pytest.approx(np.mean([r["F1"] for r in result["per_genre"]]))
    top3 = np.argsort(-scores, axis=1, kind="stable")[:, :3]
    assert result["precision_at_3"] == pytest.approx(np.take_along_axis(truth, top3, axis=1).mean())
    assert result["n_images"] == 30
    assert metrics.summary(result) == {k: result[k] for k in (*metrics.SUMMARY_KEYS, "n_images")}


def test_a_genre_without_positives_or_negatives_has_no_auc_and_is_left_out() -> None:
    truth = np.array([[1, 0], [1, 0], [1, 1]])
    scores = np.array([[0.9, 0.2], [0.8, 0.1], [0.7, 0.9]])
    result = metrics.score(truth, scores, np.full(2, 0.5), ["all", "some"])
    assert np.isnan(result["per_genre"][0]["AUC"])
    assert result["macro_AUC"] == 1.0  # only the genre with both kinds counts
    empty = metrics.score(np.zeros((2, 1)), np.array([[0.1], [0.2]]), np.full(1, 0.5), ["x"])
    assert np.isnan(empty["mAP"]) and np.isnan(empty["macro_AUC"]) and empty["macro_F1"] == 0.0


def test_label_prior_and_its_predictions() -> None:
    prior = metrics.label_prior(np.array([[1, 0], [1, 1], [0, 0], [1, 0]]))
    np.testing.assert_array_equal(prior, [0.75, 0.25])
    np.testing.assert_array_equal(metrics.prior_predictions(prior, 3), [[0.75, 0.25]] * 3)


def test_the_table_puts_the_model_beside_the_prior() -> None:
    truth, scores = sample(3, n=20, genres=4)
    model = metrics.score(truth, scores, np.full(4, 0.5), ["Action", "b", "c", "d"])
    prior = metrics.score(truth, np.full((20, 4), 0.3), np.full(4, 0.5), ["Action", "b", "c", "d"])
    lines = metrics.format_table(model, prior).splitlines()
    assert lines[0].split() == ["genre", "pos", "AP", "prior", "AP", "AUC", "F1", "thr"]
    first = model["per_genre"][0]
    assert lines[1].split() == [
        "Action",
        str(first["positives"]),
        f"{first['AP']:.3f}",
        f"{prior['per_genre'][0]['AP']:.3f}",
        f"{first['AUC']:.3f}",
        f"{first['F1']:.3f}",
        "0.50",
    ]
    assert lines[-7].split() == ["mAP", f"{model['mAP']:.4f}", f"{prior['mAP']:.4f}"]
    assert lines[-9] == "" and lines[-8] == f"{'':<12} {'model':>8} {'prior':>8}"
    assert [line.split()[0] for line in lines[-7:]] == list(metrics.SUMMARY_KEYS)


def test_set_scores_of_nothing_predicted_and_of_no_posters() -> None:
    truth = np.array([[1, 0], [0, 1]], dtype=bool)
    none = metrics.set_scores(truth, np.zeros((2, 2), dtype=bool))
    assert none == {
        "precision": 0.0, "recall": 0.0, "micro_F1": 0.0, "macro_F1": 0.0, "mean_predicted": 0.0
    }  # fmt: skip
    empty = metrics.set_scores(np.zeros((0, 2), dtype=bool), np.zeros((0, 2), dtype=bool))
    assert empty["mean_predicted"] == 0.0 and empty["macro_F1"] == 0.0
    rule = DecisionRule.build(["a", "b"], [0.9, 0.9], [False, False])
    figures = metrics.decision_scores(truth, np.array([[0.5, 0.5], [0.5, 0.5]]), rule)
    assert np.isnan(figures["min_predicted_probability"]) and figures["empty_share"] == 1.0
