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


# --- expected_f1: the genres whose combination is most likely to be right ---


def expected_f1(probs: list[float], **overrides: object) -> list[str]:
    settings: dict[str, object] = {"kind": "expected_f1", "max_predicted": None, **overrides}
    chosen = rule(**settings).decide(np.array(probs), top_k=6).predicted
    return [g for g, _ in chosen]


def test_expected_f1_takes_the_k_with_the_best_plug_in_f1() -> None:
    # Sum of p 1.65: k=1 scores 1.8/2.65 = 0.679, k=2 2.8/3.65 = 0.767, k=3 3.2/4.65 = 0.688.
    assert expected_f1([0.9, 0.5, 0.2, 0.05, 0.0, 0.0]) == ["Action", "Comedy"]
    # It ignores the per-genre thresholds: Drama at 0.45 is under its 0.50 and still chosen.
    assert expected_f1([0.0, 0.0, 0.45, 0.0, 0.0, 0.0]) == ["Drama"]


def test_expected_f1_takes_every_likely_genre_unless_capped() -> None:
    # Sum 3.2: each further genre still raises the score (0.452, 0.712, 0.871, 0.889).
    high = [0.95, 0.9, 0.85, 0.5, 0.0, 0.0]
    assert expected_f1(high) == ["Action", "Comedy", "Drama", "Horror"]
    assert expected_f1(high, max_predicted=3) == ["Action", "Comedy", "Drama"]
    assert expected_f1(high, max_predicted=1) == ["Action"]


def test_expected_f1_ties_keep_fewer_genres_and_the_model_order() -> None:
    # p = (0.3, 0.2): k=1 scores 0.6/1.5 = 0.4 and k=2 1.0/2.5 = 0.4, exactly: one genre.
    assert expected_f1([0.3, 0.2, 0.0, 0.0, 0.0, 0.0]) == ["Action"]
    # Two equal probabilities: the earlier genre first.
    assert expected_f1([0.0, 0.4, 0.4, 0.0, 0.0, 0.0], max_predicted=1) == ["Comedy"]


def test_expected_f1_when_everything_is_unlikely() -> None:
    low = [0.05, 0.04, 0.03, 0.0, 0.0, 0.0]
    assert expected_f1(low) == []  # under the 0.10 floor: nothing
    assert expected_f1(low, floor=0.0) == ["Action"]  # no floor: the best single genre


def test_expected_f1_never_predicts_unpredictable_genres_but_counts_them() -> None:
    # N/A (0.9) and News (0.8) are never predicted, but they count in the expected number of
    # true genres (sum 2.6): k=1 scores 1.2/3.6 = 0.333, k=2 1.8/4.6 = 0.391.
    probs = [0.6, 0.3, 0.0, 0.0, 0.9, 0.8]
    assert expected_f1(probs) == ["Action", "Comedy"]
    assert expected_f1([0.0, 0.0, 0.0, 0.0, 0.9, 0.8]) == []


def test_expected_f1_compares_the_shown_probabilities() -> None:
    # 0.30004 is shown as 0.3000: the same tie as (0.3, 0.2), so one genre.
    assert expected_f1([0.30004, 0.19996, 0.0, 0.0, 0.0, 0.0]) == ["Action"]


def test_the_thresholds_rule_needs_a_cap_and_unknown_rules_are_refused() -> None:
    with pytest.raises(ValueError, match=r"^the thresholds rule needs a cap \(max_predicted\)$"):
        rule(max_predicted=None)
    with pytest.raises(ValueError, match="unknown decision rule"):
        rule(kind="majority")
    with pytest.raises(ValueError, match=r"^max_predicted must be at least 1$"):
        rule(kind="expected_f1", max_predicted=0)


def test_global_threshold_shares_one_cut_and_may_leave_the_list_empty() -> None:
    shared = DecisionRule.build(
        GENRES, [0.25] * 6, PREDICTABLE, max_predicted=None, kind="global_threshold"
    )
    probs = np.array([0.3, 0.25, 0.2, 0.9, 0.9, 0.9])  # N/A and News never, whatever p
    assert [g for g, _ in shared.decide(probs, top_k=6).predicted] == ["Horror", "Action", "Comedy"]
    assert shared.decide(np.array([0.2, 0.1, 0.0, 0.0, 0.0, 0.0]), top_k=6).predicted == []


def test_each_rule_says_what_it_does_in_plain_words() -> None:
    today = rule()
    assert today.uses_thresholds
    assert today.summary() == (
        "The most probable genres past their own thresholds, at most 3; never one under 10% or "
        "one the model cannot predict. When none passes, the most probable one above 10%."
    )
    uncapped = rule(kind="expected_f1", max_predicted=None)
    assert not uncapped.uses_thresholds  # /genres shows no threshold and the page no mark
    assert "most likely to be right, judged" in uncapped.summary()  # no cap named
    assert "at most 4" in rule(kind="expected_f1", max_predicted=4).summary()
    shared = DecisionRule.build(
        GENRES, [0.2555] * 6, PREDICTABLE, max_predicted=None, kind="global_threshold"
    )
    assert shared.uses_thresholds
    assert shared.summary().startswith("Every genre at or above 26%, the one threshold")


def test_global_threshold_on_ties_all_high_and_all_low() -> None:
    shared = DecisionRule.build(
        GENRES, [0.2712] * 6, PREDICTABLE, max_predicted=None, kind="global_threshold"
    )

    def chosen(probs: list[float]) -> list[str]:
        return [g for g, _ in shared.decide(np.array(probs), top_k=6).predicted]

    # Shown at 4 decimals: 0.27115 shows as 0.2712 and passes; 0.27114 shows as 0.2711.
    assert chosen([0.27115, 0.27114, 0.0, 0.0, 0.0, 0.0]) == ["Action"]
    # Equal probabilities keep the model's order.
    assert chosen([0.5, 0.5, 0.5, 0.0, 0.0, 0.0]) == ["Action", "Comedy", "Drama"]
    # All high: every predictable genre, no cap; N/A and News never.
    assert chosen([0.9] * 6) == ["Action", "Comedy", "Drama", "Horror"]
    # All low: nothing, with no fallback to the top genre.
    assert chosen([0.27, 0.2, 0.15, 0.1, 0.9, 0.9]) == []
    capped = DecisionRule.build(
        GENRES, [0.2712] * 6, PREDICTABLE, max_predicted=2, kind="global_threshold"
    )
    assert [g for g, _ in capped.decide(np.array([0.9] * 6), top_k=6).predicted] == [
        "Action",
        "Comedy",
    ]


def test_expected_f1_without_a_floor_predicts_nothing_from_nothing() -> None:
    """With no floor, a genre at 0 is a candidate: it still adds nothing worth predicting, and
    the smallest shown probability still counts."""
    unfloored = rule(kind="expected_f1", max_predicted=None, floor=0.0)
    assert unfloored.decide(np.zeros(6), top_k=6).predicted == []
    tiny = np.array([0.0001, 0.0, 0.0, 0.0, 0.0, 0.0])
    assert [g for g, _ in unfloored.decide(tiny, top_k=6).predicted] == ["Action"]


def test_expected_f1_is_exact_in_units_of_the_shown_decimals() -> None:
    """A vector where approximate arithmetic picks 3 genres where the exact optimum is 4."""
    genres = ("A", "B", "C", "D", "E")
    exact = DecisionRule.build(
        genres, [0.5] * 5, [True] * 5, floor=0.0, max_predicted=None, kind="expected_f1"
    )
    probs = np.array([0.2825, 0.4544, 0.9602, 0.3418, 0.4674])
    assert [g for g, _ in exact.decide(probs, top_k=5).predicted] == ["C", "E", "B", "D"]
