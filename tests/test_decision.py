"""The decision rule on hand-made probability vectors: a six-genre model with `N/A`."""

from __future__ import annotations

import numpy as np
import pytest

from poster_genres.decision import MAX_PREDICTED, PROBABILITY_FLOOR, DecisionRule, shown

GENRES = ("Action", "Comedy", "Drama", "Horror", "N/A", "News")
THRESHOLDS = (0.30, 0.40, 0.50, 0.20, 0.10, 0.05)
# News has too few validation posters to be tuned: never predicted.
PREDICTABLE = (True, True, True, True, True, False)


def rule(**overrides: object) -> DecisionRule:
    return DecisionRule.build(GENRES, THRESHOLDS, PREDICTABLE, **overrides)  # type: ignore[arg-type]  # test-only overrides


def predicted(probs: list[float]) -> list[str]:
    return [g for g, _ in rule().decide(np.array(probs), top_k=6).predicted]


def test_the_defaults_are_a_ten_percent_floor_and_three_genres() -> None:
    assert PROBABILITY_FLOOR == 0.10 and MAX_PREDICTED == 3


def test_na_is_never_predicted_even_when_most_probable() -> None:
    assert predicted([0.05, 0.05, 0.60, 0.01, 0.99, 0.0]) == ["Drama"]
    assert not rule().predictable[GENRES.index("N/A")]  # whatever the caller passed


def test_exactly_the_top_three_of_five_passing_in_order() -> None:
    # Action, Comedy, Drama, Horror pass; N/A "passes" but is excluded: top three by probability.
    probs = [0.70, 0.45, 0.90, 0.65, 0.95, 0.0]
    assert predicted(probs) == ["Drama", "Action", "Horror"]
    assert rule(max_predicted=4).predicted_indices(np.array(probs)) == [2, 0, 3, 1]


def test_the_top_predictable_genre_when_none_passes() -> None:
    assert predicted([0.25, 0.35, 0.45, 0.15, 0.02, 0.0]) == ["Drama"]


def test_a_probability_shown_equal_to_its_threshold_passes() -> None:
    # Comedy sits on 0.40 as shown (4 decimals); Drama is more probable but below its 0.50.
    assert predicted([0.0, 0.40, 0.45, 0.0, 0.0, 0.0]) == ["Comedy"]
    assert predicted([0.0, np.nextafter(0.40, 0), 0.45, 0.0, 0.0, 0.0]) == ["Comedy"]
    assert predicted([0.0, 0.39996, 0.45, 0.0, 0.0, 0.0]) == ["Comedy"]  # shown 0.4000
    assert predicted([0.0, 0.39994, 0.45, 0.0, 0.0, 0.0]) == ["Drama"]  # shown 0.3999


def test_what_is_shown_agrees_with_what_is_predicted() -> None:
    # A tuned threshold is not on the 4-decimal grid: 0.30004 is shown as 0.3000, so a probability
    # shown as 0.3000 must pass it, though 0.29996 < 0.30004 unrounded; the floor likewise.
    uneven = DecisionRule.build(GENRES, (0.30004, 0.9, 0.9, 0.9, 0.9, 0.9), PREDICTABLE)
    assert (shown(0.29996), shown(0.30004)) == (0.3, 0.3)
    assert uneven.predicted_indices(np.array([0.29996, 0.5, 0.0, 0.0, 0.0, 0.0])) == [0]
    assert uneven.predicted_indices(np.array([0.29994, 0.5, 0.0, 0.0, 0.0, 0.0])) == [1]
    low = DecisionRule.build(GENRES, (0.01,) * 6, PREDICTABLE)
    assert low.predicted_indices(np.array([0.09996, 0.0, 0.0, 0.0, 0.0, 0.0])) == [0]
    assert low.predicted_indices(np.array([0.09994, 0.0, 0.0, 0.0, 0.0, 0.0])) == []


def test_the_floor_overrides_a_lower_threshold() -> None:
    low = DecisionRule.build(GENRES, (0.01,) * 6, PREDICTABLE)
    chosen = low.decide(np.array([0.5, 0.09, 0.099, 0.02, 0.0, 0.0]), top_k=3).predicted
    assert [g for g, _ in chosen] == ["Action"]
    assert all(p >= PROBABILITY_FLOOR for _, p in chosen)
    assert low.predicted_indices(np.array([0.0, 0.10, 0.0, 0.0, 0.0, 0.0])) == [1]  # at the floor


def test_nothing_is_predicted_when_no_predictable_genre_reaches_the_floor() -> None:
    # News (unpredictable) and N/A are confident; every predictable genre is under 10%.
    assert predicted([0.09, 0.05, 0.08, 0.01, 0.90, 0.95]) == []


def test_an_unpredictable_genre_is_never_predicted_and_never_the_fallback() -> None:
    assert predicted([0.01, 0.02, 0.12, 0.03, 0.0, 0.97]) == ["Drama"]


def test_top_k_ranks_every_genre_with_unrounded_probabilities() -> None:
    probs = np.array([0.123456789, 0.2, 0.3, 0.0, 0.9, 0.95])
    decision = rule().decide(probs, top_k=4)
    assert [g for g, _ in decision.top_k] == ["News", "N/A", "Drama", "Comedy"]
    assert decision.top_k[3][1] == 0.2
    assert rule().decide(probs, top_k=6).top_k[-2] == ("Action", 0.123456789)
    with pytest.raises(ValueError, match="top_k"):
        rule().decide(probs, top_k=7)


def test_predicted_matrix_matches_decide_row_by_row() -> None:
    rows = np.random.default_rng(0).random((50, 6))
    matrix = rule().predicted_matrix(rows)
    for probs, chosen in zip(rows, matrix, strict=True):
        names = {g for g, _ in rule().decide(probs, top_k=1).predicted}
        assert names == {g for g, keep in zip(GENRES, chosen, strict=True) if keep}


def test_a_rule_needs_one_threshold_and_flag_per_genre() -> None:
    with pytest.raises(ValueError, match="one threshold"):
        DecisionRule.build(GENRES, THRESHOLDS[:5], PREDICTABLE)


def test_without_flags_every_genre_but_na_is_predictable() -> None:
    plain = DecisionRule.build(GENRES, THRESHOLDS)
    assert plain.predictable.dtype == bool
    assert plain.predictable.tolist() == [True, True, True, True, False, True]
    assert [GENRES[i] for i in plain.predicted_indices(np.array([0, 0, 0, 0, 0.9, 0.8]))] == [
        "News"
    ]


def test_ties_keep_the_model_order_among_many_genres() -> None:
    names = tuple(f"g{i:02d}" for i in range(25))
    tied = DecisionRule.build(names, [0.5] * 25, [True] * 25, max_predicted=25)
    probs = np.round(np.random.default_rng(0).random(25), 1)  # many equal values
    decision = tied.decide(probs, top_k=25)
    ranked = [name for name, _ in decision.top_k]
    assert ranked == [names[i] for i in sorted(range(25), key=lambda i: (-probs[i], i))]
    assert [name for name, _ in decision.predicted] == [
        n for n in ranked if probs[names.index(n)] >= 0.5
    ]


def test_predicted_matrix_is_boolean() -> None:
    matrix = rule().predicted_matrix(np.array([[0.9, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0]]))
    assert matrix.dtype == bool
    assert matrix.tolist() == [[True] + [False] * 5, [False] * 6]
