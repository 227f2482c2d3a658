"""Probabilities -> `top_k` and `predicted`: the one decision rule, for the service, the scorer and
the model card's figures.

The rule: the *predictable* genres at or above max(their threshold, the floor), most probable first,
at most `max_predicted`; when none passes, the most probable predictable genre if it reaches the
floor; otherwise nothing. A genre the model cannot predict (too few validation posters to tune it,
or the dataset's `N/A` marker) is never predicted, however probable.

Probabilities, thresholds and the floor are compared as users see them (`shown`: 4 decimals), so
a probability shown equal to its threshold is always predicted, as the rule says.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

# "N/A" is the dataset's "no genre recorded" marker: the model keeps the output, users never see it
# as a predicted genre.
NEVER_PREDICTED = frozenset({"N/A"})
MAX_PREDICTED = 3
PROBABILITY_FLOOR = 0.10
SHOWN_DECIMALS = 4


def shown(value: float) -> float:
    """A probability or threshold as the service shows it (and as the rule compares it)."""
    return round(float(value), SHOWN_DECIMALS)


@dataclass(frozen=True)
class Decision:
    """What the service says about one poster: (genre, unrounded probability) pairs."""

    top_k: list[tuple[str, float]]
    predicted: list[tuple[str, float]]


@dataclass(frozen=True)
class DecisionRule:
    """Per-genre thresholds and predictability, plus the floor and the cap shared by all genres."""

    genres: tuple[str, ...]
    thresholds: np.ndarray
    predictable: np.ndarray
    floor: float = PROBABILITY_FLOOR
    max_predicted: int = MAX_PREDICTED

    @classmethod
    def build(
        cls,
        genres: Sequence[str],
        thresholds: Sequence[float] | np.ndarray,
        predictable: Sequence[bool] | np.ndarray | None = None,
        *,
        floor: float = PROBABILITY_FLOOR,
        max_predicted: int = MAX_PREDICTED,
    ) -> DecisionRule:
        """A rule whose `predictable` excludes `N/A` whatever the caller says."""
        names = tuple(genres)
        cut = np.asarray(thresholds, dtype=np.float64)
        able = np.ones(len(names), dtype=bool) if predictable is None else np.asarray(predictable)
        if cut.shape != (len(names),) or able.shape != (len(names),):
            raise ValueError(
                f"need one threshold and one predictable flag per genre ({len(names)})"
            )
        able = able.astype(bool) & np.array([g not in NEVER_PREDICTED for g in names])
        return cls(names, cut, able, floor, max_predicted)

    def predicted_indices(self, probabilities: np.ndarray) -> list[int]:
        """Indices of the predicted genres, most probable first."""
        probs = np.asarray(probabilities, dtype=np.float64)
        order = np.argsort(-probs, kind="stable")
        seen = [shown(p) for p in probs]
        floor = shown(self.floor)
        candidates = [int(i) for i in order if self.predictable[i] and seen[i] >= floor]
        passing = [i for i in candidates if seen[i] >= shown(self.thresholds[i])]
        return passing[: self.max_predicted] or candidates[:1]

    def predicted_matrix(self, probabilities: np.ndarray) -> np.ndarray:
        """(n, N) booleans: the `predicted` list of each row, for evaluating the rule."""
        chosen = np.zeros(np.shape(probabilities), dtype=bool)
        for row, probs in enumerate(np.asarray(probabilities)):
            chosen[row, self.predicted_indices(probs)] = True
        return chosen

    def decide(self, probabilities: np.ndarray, top_k: int) -> Decision:
        """Top-k genres (all genres ranked, `N/A` included) and the predicted ones."""
        if not 1 <= top_k <= len(self.genres):
            raise ValueError(f"top_k must be between 1 and {len(self.genres)}")
        probs = np.asarray(probabilities, dtype=np.float64)
        order = np.argsort(-probs, kind="stable")[:top_k]
        return Decision(
            top_k=[(self.genres[i], float(probs[i])) for i in order],
            predicted=[(self.genres[i], float(probs[i])) for i in self.predicted_indices(probs)],
        )
