"""Which decision rule turns calibrated probabilities into the best `predicted` lists?

Compared on the validation split as the train-only model scored it (`validation.npz`), never on
test posters. Everything a rule fits is cross-fitted: the validation posters are split into folds,
and each fold is decided by a calibration (per-genre Platt) and thresholds fitted on the other
folds only, since the shipped calibration was fitted on this same split.

Rules compared:
- `thresholds`: today's, per-genre F1-tuned thresholds, the floor, at most 3;
- `expected_f1` with caps 3, 4 and none (poster_genres.decision), with and without the floor;
- `exact_expected_f1`: the top-k set with the highest exact expected F1 under independence
  (Jansche 2007: a dynamic programme over the number of true genres);
- `global_threshold`: one threshold for every genre, half the micro-F1 attainable on the fitting
  folds (for a calibrated classifier the F1-optimal threshold is half the optimal F1).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from poster_genres.decision import NEVER_PREDICTED, PROBABILITY_FLOOR, DecisionRule, shown
from training import calibration, metrics

FOLDS = 5
BOOTSTRAP = 2000
MIN_GAIN = 0.01


def exact_expected_f1(probs: np.ndarray, k: int, chosen: np.ndarray) -> float:
    """E[F1] of predicting the genres `chosen[:k]` when genre j is true with probability
    probs[j], independently; F1 of an empty prediction for a poster with no genre is 1."""
    inside = probs[chosen[:k]]
    outside = np.delete(probs, chosen[:k])

    def count_distribution(ps: np.ndarray) -> np.ndarray:
        dist = np.zeros(len(ps) + 1)
        dist[0] = 1.0
        for p in ps:  # Poisson-binomial, one genre at a time
            dist[1:] = dist[1:] * (1 - p) + dist[:-1] * p
            dist[0] *= 1 - p
        return dist

    hits, misses = count_distribution(inside), count_distribution(outside)
    a = np.arange(len(hits))[:, None]
    b = np.arange(len(misses))[None, :]
    denominator = k + a + b
    f1 = np.where(denominator == 0, 1.0, 2 * a / np.maximum(denominator, 1))
    return float((hits[:, None] * misses[None, :] * f1).sum())


def exact_expected_f1_sets(probs: np.ndarray, predictable: np.ndarray, floor: float) -> np.ndarray:
    """Per poster, the top-k predictable genres (at or above `floor`) of highest exact E[F1]."""
    chosen = np.zeros(probs.shape, dtype=bool)
    for row, p in enumerate(probs):
        order = [
            int(i) for i in np.argsort(-p, kind="stable") if predictable[i] and shown(p[i]) >= floor
        ]
        scores = [
            exact_expected_f1(p, k, np.asarray(order, dtype=int)) for k in range(len(order) + 1)
        ]
        best = int(np.argmax(scores))  # the first maximum: fewer genres on a tie
        chosen[row, order[:best]] = True
    return chosen


def _micro_f1(labels: np.ndarray, chosen: np.ndarray) -> float:
    tp = float((chosen & labels).sum())
    return 2 * tp / max(float(chosen.sum() + labels.sum()), 1.0)


def global_threshold(labels: np.ndarray, probs: np.ndarray, predictable: np.ndarray) -> float:
    """Half the best micro-F1 any single threshold reaches on (labels, probs)."""
    grid = np.round(np.arange(0.01, 1.0, 0.005), 4)
    best = max(_micro_f1(labels, (probs >= t) & predictable) for t in grid)
    return best / 2


def per_poster_f1(labels: np.ndarray, chosen: np.ndarray) -> float:
    """Mean over posters of the F1 of their predicted set (1 for an empty set on no genre)."""
    tp = (chosen & labels).sum(axis=1)
    size = chosen.sum(axis=1) + labels.sum(axis=1)
    return float(np.where(size == 0, 1.0, 2 * tp / np.maximum(size, 1)).mean())


def figures(labels: np.ndarray, chosen: np.ndarray) -> dict[str, float]:
    """The comparison's columns for one rule's predicted sets."""
    found = metrics.set_scores(labels, chosen)
    return {
        "micro_F1": found["micro_F1"],
        "per_poster_F1": per_poster_f1(labels, chosen),
        "macro_F1": found["macro_F1"],
        "precision": found["precision"],
        "recall": found["recall"],
        "genres_per_poster": found["mean_predicted"],
        "empty_share": float((chosen.sum(axis=1) == 0).mean()),
    }


@dataclass(frozen=True)
class FoldData:
    """What a rule may fit on (the other folds) and the probabilities it decides (this fold)."""

    fit_labels: np.ndarray
    fit_probs: np.ndarray
    probs: np.ndarray


Decide = Callable[[FoldData], np.ndarray]


def candidate_rules(genres: list[str], predictable: np.ndarray) -> dict[str, Decide]:
    """Every rule the issue asks to compare, by name, as fold -> predicted sets."""

    def thresholds(fold: FoldData) -> np.ndarray:
        tuned = metrics.tune_thresholds(fold.fit_labels, fold.fit_probs)
        return DecisionRule.build(genres, tuned, predictable).predicted_matrix(fold.probs)

    def expected_f1(cap: int | None, floor: float) -> Decide:
        rule = DecisionRule.build(
            genres,
            np.zeros(len(genres)),
            predictable,
            floor=floor,
            max_predicted=cap,
            kind="expected_f1",
        )
        return lambda fold: rule.predicted_matrix(fold.probs)

    def exact(fold: FoldData) -> np.ndarray:
        return exact_expected_f1_sets(fold.probs, able, PROBABILITY_FLOOR)

    def one_threshold(fold: FoldData) -> np.ndarray:
        cut = global_threshold(fold.fit_labels.astype(bool), fold.fit_probs, able)
        rule = DecisionRule.build(
            genres,
            np.full(len(genres), cut),
            predictable,
            max_predicted=None,
            kind="global_threshold",
        )
        return rule.predicted_matrix(fold.probs)

    able = np.asarray(predictable, dtype=bool) & np.array(
        [g not in NEVER_PREDICTED for g in genres]
    )
    rules: dict[str, Decide] = {"thresholds (today)": thresholds}
    for cap in (3, 4, None):
        rules[f"expected_f1, cap {cap or 'none'}"] = expected_f1(cap, PROBABILITY_FLOOR)
    rules["expected_f1, cap 4, no floor"] = expected_f1(4, 0.0)
    rules["exact expected F1"] = exact
    rules["global threshold F*/2"] = one_threshold
    return rules


def cross_fitted_sets(
    labels: np.ndarray,
    raw: np.ndarray,
    genres: list[str],
    predictable: np.ndarray,
    *,
    folds: int = FOLDS,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """Each rule's predicted sets for every validation poster, each fold decided by what was
    fitted on the others (calibration included)."""
    rules = candidate_rules(genres, predictable)
    order = np.random.default_rng(seed).permutation(len(labels))
    sets = {name: np.zeros(labels.shape, dtype=bool) for name in rules}
    for part in np.array_split(order, folds):
        others = np.setdiff1d(order, part)
        platt = calibration.fit_platt(labels[others], raw[others], predictable)
        fold = FoldData(labels[others], platt.apply(raw[others]), platt.apply(raw[part]))
        for name, decide in rules.items():
            sets[name][part] = decide(fold)
    return sets


def compare(
    labels: np.ndarray,
    sets: dict[str, np.ndarray],
    *,
    baseline: str = "thresholds (today)",
    draws: int = BOOTSTRAP,
    seed: int = 0,
) -> dict[str, dict[str, Any]]:
    """Figures per rule, with the paired bootstrap 95% interval of its micro-F1 gain over the
    baseline."""
    labels = labels.astype(bool)
    rng = np.random.default_rng(seed)
    samples = rng.integers(0, len(labels), size=(draws, len(labels)))
    base = sets[baseline]
    result: dict[str, dict[str, Any]] = {}
    for name, chosen in sets.items():
        gains = np.array(
            [_micro_f1(labels[s], chosen[s]) - _micro_f1(labels[s], base[s]) for s in samples]
        )
        row: dict[str, Any] = figures(labels, chosen)
        row["gain"] = row["micro_F1"] - _micro_f1(labels, base)
        row["gain_ci95"] = [float(np.quantile(gains, 0.025)), float(np.quantile(gains, 0.975))]
        result[name] = row
    return result


def choose(result: dict[str, dict[str, Any]], baseline: str = "thresholds (today)") -> str:
    """The rule with the best micro-F1 among those gaining >= MIN_GAIN with the interval above 0;
    on a tie (within 0.001), fewer genres per poster. The baseline when none qualifies."""
    qualified = [
        name
        for name, row in result.items()
        if name != baseline and row["gain"] >= MIN_GAIN and row["gain_ci95"][0] > 0
    ]
    if not qualified:
        return baseline
    top = max(result[name]["micro_F1"] for name in qualified)
    tied = [name for name in qualified if result[name]["micro_F1"] >= top - 0.001]
    return min(tied, key=lambda name: result[name]["genres_per_poster"])


def study(validation_file: Path, genres: list[str], predictable: np.ndarray) -> dict[str, Any]:
    """The whole comparison on a version's `validation.npz`: figures per rule and the choice."""
    with np.load(validation_file) as kept:
        labels, raw = kept["labels"].astype(bool), kept["raw"].astype(np.float64)
    sets = cross_fitted_sets(labels, raw, genres, predictable)
    result = compare(labels, sets)
    return {"posters": len(labels), "rules": result, "chosen": choose(result)}


def table(found: dict[str, Any]) -> str:
    """The comparison as a Markdown table."""
    columns = ("micro_F1", "per_poster_F1", "macro_F1", "precision", "recall")
    lines = [
        "| rule | micro-F1 | per-poster F1 | macro-F1 | precision | recall | genres/poster "
        "| none | gain (95% CI) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for name, row in found["rules"].items():
        low, high = row["gain_ci95"]
        cells = " | ".join(f"{row[c]:.3f}" for c in columns)
        lines.append(
            f"| {name} | {cells} | {row['genres_per_poster']:.2f} | {row['empty_share']:.1%} "
            f"| {row['gain']:+.3f} ({low:+.3f}, {high:+.3f}) |"
        )
    return "\n".join(lines)
