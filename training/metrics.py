"""Multi-label metrics, threshold tuning and the label-prior baseline.

One implementation, used while training (validation mAP per epoch), for the reported test figures and
by `python -m training evaluate`. Plain numpy so the numbers do not depend on a metrics library.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from poster_genres.decision import DecisionRule

FALLBACK_THRESHOLD = 0.5
MIN_POSITIVES_TO_TUNE = 3


def average_precision(y_true: np.ndarray, scores: np.ndarray) -> float:
    """AP as the mean of precision at each positive's rank (ties broken pessimistically)."""
    y_true = np.asarray(y_true).astype(bool)
    n_pos = int(y_true.sum())
    if n_pos == 0:
        return float("nan")
    # Stable sort on (-score, label) puts negatives first among equal scores: no optimism from ties.
    order = np.lexsort((y_true, -np.asarray(scores, dtype=np.float64)))
    hits = y_true[order]
    precision_at_hit = np.cumsum(hits)[hits] / (np.flatnonzero(hits) + 1)
    return float(precision_at_hit.mean())


def roc_auc(y_true: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve via the Mann-Whitney rank statistic (ties count half)."""
    y_true = np.asarray(y_true).astype(bool)
    n_pos, n_neg = int(y_true.sum()), int((~y_true).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    scores = np.asarray(scores, dtype=np.float64)
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores), dtype=np.float64)
    sorted_scores = scores[order]
    _, first, counts = np.unique(sorted_scores, return_index=True, return_counts=True)
    average_rank = first + (counts + 1) / 2.0
    ranks[order] = np.repeat(average_rank, counts)
    return float((ranks[y_true].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _f1(tp: float, fp: float, fn: float) -> float:
    denominator = 2 * tp + fp + fn
    return 0.0 if denominator == 0 else 2 * tp / denominator


def tune_thresholds(
    y_true: np.ndarray, probs: np.ndarray, min_positives: int = MIN_POSITIVES_TO_TUNE
) -> np.ndarray:
    """Per-genre threshold maximising F1 on (validation) data.

    A genre with fewer than `min_positives` positives keeps FALLBACK_THRESHOLD: an F1 optimum over one
    or two examples is noise and would make the genre fire on look-alikes.
    """
    y_true = np.asarray(y_true).astype(bool)
    thresholds = np.full(y_true.shape[1], FALLBACK_THRESHOLD, dtype=np.float64)
    for j in range(y_true.shape[1]):
        truth, score = y_true[:, j], probs[:, j]
        if truth.sum() < min_positives:
            continue
        order = np.argsort(-score, kind="mergesort")
        sorted_scores, sorted_truth = score[order], truth[order]
        tp = np.cumsum(sorted_truth)
        fp = np.cumsum(~sorted_truth)
        fn = truth.sum() - tp
        f1 = 2 * tp / np.maximum(2 * tp + fp + fn, 1)
        # Only cut where the score changes, so "predict at >= threshold" reproduces the count.
        last_of_tie = np.r_[sorted_scores[1:] != sorted_scores[:-1], True]
        best = int(np.argmax(np.where(last_of_tie, f1, -1.0)))
        thresholds[j] = float(sorted_scores[best])
    return thresholds


def mean_average_precision(y_true: np.ndarray, probs: np.ndarray) -> float:
    """Macro mAP: the mean of per-genre AP over genres with at least one positive."""
    y_true = np.asarray(y_true).astype(bool)
    aps = [
        average_precision(y_true[:, j], probs[:, j])
        for j in range(y_true.shape[1])
        if y_true[:, j].any()
    ]
    return float(np.mean(aps)) if aps else float("nan")


def set_scores(y_true: np.ndarray, chosen: np.ndarray) -> dict[str, float]:
    """Precision, recall and F1 of predicted genre sets (micro over all pairs; macro-F1 over genres
    with positives), and how many genres a poster gets on average."""
    y_true = np.asarray(y_true).astype(bool)
    chosen = np.asarray(chosen).astype(bool)
    tp = float((chosen & y_true).sum())
    fp = float((chosen & ~y_true).sum())
    fn = float((~chosen & y_true).sum())
    per_genre = [
        _f1(
            float((chosen[:, j] & y_true[:, j]).sum()),
            float((chosen[:, j] & ~y_true[:, j]).sum()),
            float((~chosen[:, j] & y_true[:, j]).sum()),
        )
        for j in range(y_true.shape[1])
        if y_true[:, j].any()
    ]
    return {
        "precision": tp / (tp + fp) if tp + fp else 0.0,
        "recall": tp / (tp + fn) if tp + fn else 0.0,
        "micro_F1": _f1(tp, fp, fn),
        "macro_F1": float(np.mean(per_genre)) if per_genre else 0.0,
        "mean_predicted": float(chosen.sum(axis=1).mean()) if len(chosen) else 0.0,
    }


def decision_scores(y_true: np.ndarray, probs: np.ndarray, rule: DecisionRule) -> dict[str, float]:
    """How good the `predicted` lists are, as users see them: set scores, the lowest probability
    shown as predicted, and the share of posters with an empty list."""
    chosen = rule.predicted_matrix(probs)
    figures = set_scores(y_true, chosen)
    shown = np.asarray(probs)[chosen]
    figures["min_predicted_probability"] = float(shown.min()) if shown.size else float("nan")
    figures["empty_share"] = float((chosen.sum(axis=1) == 0).mean()) if len(chosen) else 0.0
    return figures


def precision_at_k(y_true: np.ndarray, probs: np.ndarray, k: int = 3) -> float:
    top = np.argsort(-probs, axis=1, kind="mergesort")[:, :k]
    return float(np.take_along_axis(np.asarray(y_true), top, axis=1).mean())


def score(
    y_true: np.ndarray, probs: np.ndarray, thresholds: np.ndarray, genres: list[str]
) -> dict[str, Any]:
    """Every reported figure for one set of predictions, plus a per-genre breakdown."""
    y_true = np.asarray(y_true).astype(bool)
    probs = np.asarray(probs, dtype=np.float64)
    predicted = probs >= np.asarray(thresholds)[None, :]
    per_genre: list[dict[str, Any]] = []
    for j, genre in enumerate(genres):
        tp = float((predicted[:, j] & y_true[:, j]).sum())
        fp = float((predicted[:, j] & ~y_true[:, j]).sum())
        fn = float((~predicted[:, j] & y_true[:, j]).sum())
        per_genre.append(
            {
                "genre": genre,
                "positives": int(y_true[:, j].sum()),
                "AP": average_precision(y_true[:, j], probs[:, j]),
                "AUC": roc_auc(y_true[:, j], probs[:, j]),
                "F1": _f1(tp, fp, fn),
                "threshold": float(thresholds[j]),
            }
        )
    tp = float((predicted & y_true).sum())
    fp = float((predicted & ~y_true).sum())
    fn = float((~predicted & y_true).sum())
    has_positive = [g for g in per_genre if g["positives"] > 0]
    aucs = [g["AUC"] for g in per_genre if not np.isnan(g["AUC"])]
    return {
        "mAP": float(np.mean([g["AP"] for g in has_positive])) if has_positive else float("nan"),
        "micro_AP": average_precision(y_true.ravel(), probs.ravel()),
        "macro_AUC": float(np.mean(aucs)) if aucs else float("nan"),
        "micro_F1": _f1(tp, fp, fn),
        "macro_F1": float(np.mean([g["F1"] for g in has_positive])) if has_positive else 0.0,
        "precision_at_3": precision_at_k(y_true, probs, 3),
        "brier": float(np.mean((probs - y_true) ** 2)),
        "n_images": int(y_true.shape[0]),
        "per_genre": per_genre,
    }


def label_prior(train_labels: np.ndarray) -> np.ndarray:
    """Each genre's frequency in the training split: the baseline every model must beat."""
    return np.asarray(train_labels, dtype=np.float64).mean(axis=0)


def prior_predictions(prior: np.ndarray, n_images: int) -> np.ndarray:
    return np.tile(np.asarray(prior, dtype=np.float64), (n_images, 1))


SUMMARY_KEYS = ("mAP", "micro_AP", "macro_AUC", "micro_F1", "macro_F1", "precision_at_3", "brier")


def summary(result: dict[str, Any]) -> dict[str, float]:
    """The headline figures of a `score` result, without the per-genre breakdown."""
    return {k: result[k] for k in (*SUMMARY_KEYS, "n_images")}


def format_table(model: dict[str, Any], prior: dict[str, Any]) -> str:
    """Per-genre table with the model beside the label prior, for people."""
    lines = [f"{'genre':<12} {'pos':>5} {'AP':>6} {'prior AP':>8} {'AUC':>6} {'F1':>6} {'thr':>5}"]
    for g, p in zip(model["per_genre"], prior["per_genre"], strict=True):
        lines.append(
            f"{g['genre']:<12} {g['positives']:>5} {g['AP']:>6.3f} {p['AP']:>8.3f} "
            f"{g['AUC']:>6.3f} {g['F1']:>6.3f} {g['threshold']:>5.2f}"
        )
    lines.append("")
    lines.append(f"{'':<12} {'model':>8} {'prior':>8}")
    for key in SUMMARY_KEYS:
        lines.append(f"{key:<14} {model[key]:>8.4f} {prior[key]:>8.4f}")
    return "\n".join(lines)
