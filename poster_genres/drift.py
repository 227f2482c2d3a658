"""Drift of the genre mix: how far live `predicted` rates are from those on held-out posters.

The score is a population stability index (PSI) over the genres, each genre a yes/no
distribution: for a live rate r and a reference rate q (both clamped to [EPSILON, 1 - EPSILON]),
    (r - q)·ln(r / q) + (q - r)·ln((1 - r) / (1 - q)),
summed over genres. Prometheus computes the same sum from the service's counters
(`deploy/prometheus/rules.yml`, where replicas add up); `population_stability` is the reference
implementation its tests compare with.

The alert threshold comes from a bootstrap: windows of `window_answers` posters drawn at random
from the held-out posters cross it less than `false_alarm` of the time (it is set where half that
rate does, and checked on fresh draws). Predicted rates are not
label rates: the reference is what this version predicts on posters it never trained on.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from poster_genres.decision import DecisionRule

EPSILON = 0.001  # keeps ln() finite for a genre absent from a window or from the reference
WINDOW_ANSWERS = 200  # the fewest answers in a window before the rule scores it
FALSE_ALARM = 0.01
BOOTSTRAP_DRAWS = 4000


class DriftReference(BaseModel):
    """What a version predicts on held-out posters, and the PSI that counts as drift."""

    model_config = ConfigDict(extra="allow")

    source: str
    posters: int = Field(ge=1)
    predicted_rate: list[float]
    mean_probability: list[float]
    window_answers: int = Field(WINDOW_ANSWERS, ge=1)
    false_alarm: float = FALSE_ALARM
    psi_threshold: float = Field(ge=0.0)
    bootstrap: dict[str, Any] = Field(default_factory=dict)


def population_stability(rates: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """PSI of predicted rates against the reference; `rates` may be one vector or one per row."""
    r = np.clip(np.asarray(rates, dtype=np.float64), EPSILON, 1 - EPSILON)
    q = np.clip(np.asarray(reference, dtype=np.float64), EPSILON, 1 - EPSILON)
    terms = (r - q) * np.log(r / q) + (q - r) * np.log((1 - r) / (1 - q))
    return np.asarray(terms.sum(axis=-1))


def build_reference(
    probabilities: np.ndarray,
    rule: DecisionRule,
    source: str,
    *,
    window_answers: int = WINDOW_ANSWERS,
    false_alarm: float = FALSE_ALARM,
    draws: int = BOOTSTRAP_DRAWS,
    seed: int = 0,
) -> DriftReference:
    """The reference rates of held-out `probabilities` and a bootstrapped PSI threshold.

    The threshold is the (1 - false_alarm / 2) quantile of PSI over `draws` random windows; a
    second, independent set of draws measures how often it is actually crossed.
    """
    predicted = rule.predicted_matrix(probabilities).astype(np.float64)
    reference = predicted.mean(axis=0)
    rng = np.random.default_rng(seed)

    def window_scores() -> np.ndarray:
        rows = rng.integers(0, len(predicted), size=(draws, window_answers))
        return population_stability(predicted[rows].mean(axis=1), reference)

    chosen_on = window_scores()
    # Half the allowed rate: the quantile of a finite bootstrap is itself noisy (±0.16% at 4,000
    # draws), and the promise is "under 1%", not "about 1%".
    threshold = float(np.quantile(chosen_on, 1 - false_alarm / 2))
    checked = window_scores()
    return DriftReference(
        source=source,
        posters=len(predicted),
        predicted_rate=[round(float(v), 6) for v in reference],
        mean_probability=[round(float(v), 6) for v in probabilities.mean(axis=0)],
        window_answers=window_answers,
        false_alarm=false_alarm,
        psi_threshold=round(threshold, 6),
        bootstrap={
            "draws": draws,
            "seed": seed,
            "median_psi": round(float(np.median(chosen_on)), 6),
            "crossed_on_fresh_draws": round(float(np.mean(checked > threshold)), 4),
        },
    )
