"""Probabilities -> `top_k` and `predicted`: the decision rules, for the service, the scorer and
the model card's figures. A version's metadata names its rule (`decision.rule`); older metadata
has none and means `thresholds`.

`thresholds` (every version up to v2): the *predictable* genres at or above max(their threshold,
the floor), most probable first, at most `max_predicted`; when none passes, the most probable
predictable genre if it reaches the floor; otherwise nothing.

`expected_f1`: the genres whose combination is most likely to be right. With calibrated
probabilities p, the k most probable predictable genres (at or above the floor) for the k that
maximises the plug-in expected F1 of the poster, 2·(sum of their p) / (k + sum of every p), at most
`max_predicted` (None: no cap); ties go to fewer genres. No per-genre threshold is used.

`global_threshold`: the predictable genres at or above one threshold shared by every genre (and
the floor), most probable first, at most `max_predicted` (None: no cap); nothing when none passes.
For calibrated probabilities the F1-optimal threshold is half the attainable F1, so it is set there.

Under both, a genre the model cannot predict (too few validation posters to tune it, or the
dataset's `N/A` marker) is never predicted, however probable. Probabilities, thresholds and the
floor are compared as users see them (`shown`: 4 decimals), so what is shown always explains what
is predicted.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

# "N/A" is the dataset's "no genre recorded" marker: the model keeps the output, users never see it
# as a predicted genre.
NEVER_PREDICTED = frozenset({"N/A"})
MAX_PREDICTED = 3
PROBABILITY_FLOOR = 0.10
SHOWN_DECIMALS = 4
RuleKind = Literal["thresholds", "expected_f1", "global_threshold"]
RULE_KINDS: tuple[RuleKind, ...] = ("thresholds", "expected_f1", "global_threshold")


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
    """Per-genre thresholds and predictability, plus the floor, the cap (None: none, for
    `expected_f1` only) and which rule decides."""

    genres: tuple[str, ...]
    thresholds: np.ndarray
    predictable: np.ndarray
    floor: float = PROBABILITY_FLOOR
    max_predicted: int | None = MAX_PREDICTED
    kind: RuleKind = "thresholds"

    @classmethod
    def build(
        cls,
        genres: Sequence[str],
        thresholds: Sequence[float] | np.ndarray,
        predictable: Sequence[bool] | np.ndarray | None = None,
        *,
        floor: float = PROBABILITY_FLOOR,
        max_predicted: int | None = MAX_PREDICTED,
        kind: RuleKind = "thresholds",
    ) -> DecisionRule:
        """A rule whose `predictable` excludes `N/A` whatever the caller says."""
        names = tuple(genres)
        cut = np.asarray(thresholds, dtype=np.float64)
        able = np.ones(len(names), dtype=bool) if predictable is None else np.asarray(predictable)
        if cut.shape != (len(names),) or able.shape != (len(names),):
            raise ValueError(
                f"need one threshold and one predictable flag per genre ({len(names)})"
            )
        if kind not in RULE_KINDS:
            raise ValueError(f"unknown decision rule {kind!r}; one of {RULE_KINDS}")
        if max_predicted is None and kind == "thresholds":
            raise ValueError("the thresholds rule needs a cap (max_predicted)")
        if max_predicted is not None and max_predicted < 1:
            raise ValueError("max_predicted must be at least 1")
        able = able.astype(bool) & np.array([g not in NEVER_PREDICTED for g in names])
        return cls(names, cut, able, floor, max_predicted, kind)

    @property
    def uses_thresholds(self) -> bool:
        """Whether a genre's threshold decides anything (not under `expected_f1`)."""
        return self.kind != "expected_f1"

    def summary(self) -> str:
        """The rule in one or two plain sentences, for the page and `/genres`."""
        floor = f"{self.floor:.0%}"
        cap = "" if self.max_predicted is None else f", at most {self.max_predicted}"
        if self.kind == "expected_f1":
            return (
                f"The genres whose combination is most likely to be right{cap}, judged from the "
                f"probabilities alone; never one under {floor} or one the model cannot predict."
            )
        if self.kind == "global_threshold":
            shared = f"{shown(float(self.thresholds.max(initial=0.0))):.0%}"  # all the same
            return (
                f"Every genre at or above {shared}, the one threshold all genres share{cap}; "
                f"never one under {floor} or one the model cannot predict."
            )
        return (
            f"The most probable genres past their own thresholds{cap}; never one under {floor} or "
            "one the model cannot predict. When none passes, the most probable one above "
            f"{floor}."
        )

    def predicted_indices(self, probabilities: np.ndarray) -> list[int]:
        """Indices of the predicted genres, most probable first."""
        probs = np.asarray(probabilities, dtype=np.float64)
        order = np.argsort(-probs, kind="stable")
        seen = [shown(p) for p in probs]
        floor = shown(self.floor)
        candidates = [int(i) for i in order if self.predictable[i] and seen[i] >= floor]
        if self.kind == "expected_f1":
            return candidates[: self._best_count(seen, candidates)]
        passing = [i for i in candidates if seen[i] >= shown(self.thresholds[i])]
        if self.kind == "global_threshold":
            return passing[: self.max_predicted]
        return passing[: self.max_predicted] or candidates[:1]

    def _best_count(self, seen: list[float], candidates: list[int]) -> int:
        """The k maximising 2·(sum of the top-k p) / (k + sum of all p), in exact integer
        arithmetic on the shown values (units of 1e-4), so equal scores are equal; ties keep the
        smaller k."""
        scale = 10**SHOWN_DECIMALS
        units = [round(p * scale) for p in seen]
        expected = sum(units)  # the expected number of true genres, in units
        best_k, best_top, top = 0, 0, 0
        for k, index in enumerate(candidates[: self.max_predicted], start=1):  # None: no cap
            top += units[index]
            # top / (k·scale + expected) > best_top / (best_k·scale + expected), cross-multiplied
            if top * (best_k * scale + expected) > best_top * (k * scale + expected):
                best_k, best_top = k, top
        return best_k

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
