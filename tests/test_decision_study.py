"""The decision-rule study: the exact expected F1 against brute force, cross-fitting, the choice."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import TinyDataset
from training.decision_study import (
    choose,
    compare,
    cross_fitted_sets,
    exact_expected_f1,
    exact_expected_f1_sets,
    global_threshold,
    per_poster_f1,
)


def brute_expected_f1(probs: np.ndarray, chosen: set[int]) -> float:
    total = 0.0
    for truth in itertools.product((0, 1), repeat=len(probs)):
        weight = float(np.prod([p if t else 1 - p for p, t in zip(probs, truth, strict=True)]))
        true = {i for i, t in enumerate(truth) if t}
        size = len(chosen) + len(true)
        total += weight * (1.0 if size == 0 else 2 * len(chosen & true) / size)
    return total


@pytest.mark.parametrize("seed", range(5))
def test_the_exact_expected_f1_is_the_brute_force_one(seed: int) -> None:
    probs = np.random.default_rng(seed).uniform(0, 1, size=5)
    order = np.argsort(-probs)
    for k in range(6):
        assert exact_expected_f1(probs, k, order) == pytest.approx(
            brute_expected_f1(probs, set(order[:k].tolist())), abs=1e-12
        )


def test_the_exact_rule_picks_the_best_top_k_and_respects_predictability() -> None:
    probs = np.array([[0.9, 0.6, 0.2, 0.95], [0.05, 0.02, 0.01, 0.0]])
    able = np.array([True, True, True, False])
    chosen = exact_expected_f1_sets(probs, able, floor=0.1)
    order = np.array([0, 1, 2])
    best = max(range(4), key=lambda k: exact_expected_f1(probs[0], k, order))
    assert chosen[0].tolist() == [k < best for k in range(3)] + [False]
    assert not chosen[1].any()  # under the floor


def test_per_poster_f1_and_the_global_threshold() -> None:
    labels = np.array([[1, 0, 1], [0, 0, 0]], dtype=bool)
    chosen = np.array([[1, 1, 0], [0, 0, 0]], dtype=bool)
    assert per_poster_f1(labels, chosen) == pytest.approx((2 * 1 / 4 + 1.0) / 2)
    probs = np.array([[0.9, 0.2, 0.6], [0.1, 0.3, 0.2]])
    cut = global_threshold(labels, probs, np.ones(3, dtype=bool))
    assert cut == pytest.approx(0.5)  # a perfect threshold exists (F1 1): half of it


def synthetic(seed: int, n: int = 600) -> tuple[np.ndarray, np.ndarray, list[str], np.ndarray]:
    rng = np.random.default_rng(seed)
    genres = ["Drama", "Comedy", "Action", "Horror", "Romance", "N/A"]
    truth_p = rng.beta(0.5, 1.5, size=(n, len(genres)))
    labels = rng.uniform(size=truth_p.shape) < truth_p
    raw = truth_p**1.4  # miscalibrated: Platt has something to fix
    return labels, np.clip(raw, 1e-4, 1 - 1e-4), genres, np.array([True] * 5 + [False])


def test_cross_fitting_decides_every_poster_by_every_rule() -> None:
    labels, raw, genres, able = synthetic(1)
    sets = cross_fitted_sets(labels, raw, genres, able, folds=4)
    assert "thresholds (today)" in sets and "exact expected F1" in sets
    for chosen in sets.values():
        assert chosen.shape == labels.shape and not chosen[:, 5].any()  # N/A never
    result = compare(labels, sets, draws=200)
    assert result["thresholds (today)"]["gain"] == 0.0
    low, high = result["expected_f1, cap none"]["gain_ci95"]
    assert low <= result["expected_f1, cap none"]["gain"] <= high


def row(micro: float, gain: float, low: float, genres: float) -> dict[str, object]:
    return {
        "micro_F1": micro,
        "gain": gain,
        "gain_ci95": [low, gain + 0.01],
        "genres_per_poster": genres,
    }


def test_the_choice_needs_a_clear_gain_and_prefers_fewer_genres_on_a_tie() -> None:
    base = row(0.50, 0.0, 0.0, 2.7)
    assert (
        choose({"thresholds (today)": base, "a": row(0.509, 0.009, 0.001, 2.0)})
        == "thresholds (today)"
    )
    assert (
        choose({"thresholds (today)": base, "a": row(0.52, 0.02, -0.001, 2.0)})
        == "thresholds (today)"
    )
    found = {
        "thresholds (today)": base,
        "many": row(0.5205, 0.0205, 0.004, 3.4),
        "few": row(0.5200, 0.0200, 0.003, 2.6),
        "worse": row(0.515, 0.015, 0.002, 1.0),
    }
    assert choose(found) == "few"


def test_a_derived_version_keeps_the_weights_and_answers_by_its_own_rule(
    tmp_path: Path, tiny_version: Path, tiny_dataset: TinyDataset
) -> None:
    import shutil

    from poster_genres.artifact import open_version, sha256_of
    from poster_genres.classifier import GenreClassifier
    from training.__main__ import main as training_cli

    store = tmp_path / "store" / "poster-genres"
    shutil.copytree(tiny_version, store / "tiny")
    argv = ["derive-version", "--model-dir", str(store / "tiny"), "--version", "tiny-ef1"]
    argv += ["--rule", "expected_f1", "--max-predicted", "0", "--floor", "0"]
    argv += ["--csv", str(tiny_dataset.csv), "--images", str(tiny_dataset.images)]
    assert training_cli(argv) == 0
    old, new = open_version(store / "tiny"), open_version(store / "tiny-ef1")
    assert new.metadata.model_sha256 == old.metadata.model_sha256
    assert sha256_of(store / "tiny-ef1" / "model.keras") == sha256_of(
        store / "tiny" / "model.keras"
    )
    assert new.metadata.decision.rule == "expected_f1" and new.metadata.decision.cap is None
    assert new.metadata.derived_from["version"] == "tiny"
    assert new.metadata.drift is not None and old.metadata.drift is not None
    # The rule changes answers: at least the test figures are recomputed under it.
    rule = GenreClassifier.open(store / "tiny-ef1").rule
    assert rule.kind == "expected_f1" and rule.floor == 0.0
    assert new.metadata.metrics["test_predicted"] != old.metadata.metrics["test_predicted"]
    with pytest.raises(FileExistsError):
        training_cli(argv)  # the version exists now
