"""The heatmaps carry information about the shipped model (tools/explain_check.py on real posters)."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.config import PROJECT_ROOT
from poster_genres.artifact import resolve_version_dir
from tools.explain_check import Report, Summary, evaluate, held_out_posters

POSTERS = 32
# Three models' maps on 32 posters and 1,056 deletion predictions: about a minute on an AVX2 CPU.
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def report(real_data: Path) -> Report:
    version = resolve_version_dir(PROJECT_ROOT / "model_store", "poster-genres", None)
    posters = held_out_posters(version, POSTERS)
    assert len(posters) == POSTERS
    return evaluate(version, posters)


def test_deleting_the_hottest_cells_removes_more_than_random_cells(report: Report) -> None:
    trained = report.trained
    assert len(trained.results) == POSTERS
    assert trained.mean_heatmap_drop > 2 * trained.mean_random_drop  # on average, by far
    assert trained.wins > 0.75 * POSTERS  # and on most posters


def test_two_genres_of_one_poster_get_different_maps(report: Report) -> None:
    assert sum(report.genre_correlations) / len(report.genre_correlations) < 0.8


def passes_deletion(summary: Summary) -> bool:
    return summary.mean_heatmap_drop > summary.mean_random_drop and summary.wins > POSTERS / 2


def test_maps_from_a_randomised_head_fail_the_deletion_test(report: Report) -> None:
    """Sanity: the maps read the trained weights. With the head (last block, head conv, Dense)
    randomised they fail the test the trained maps pass."""
    assert passes_deletion(report.trained)
    assert not passes_deletion(report.random_heads["last block + head conv + Dense"])


def test_random_dense_weights_take_most_of_the_maps_edge_away(report: Report) -> None:
    """With only the Dense layer randomised the maps remove far less of the genre and the trained
    maps beat them on most posters. (They can still beat random masks on average: the kept backbone
    lights up the poster's busy parts whatever the head; see bench/EXPLAIN.md.)"""
    assert report.random_head.mean_heatmap_drop < 0.75 * report.trained.mean_heatmap_drop
    assert report.random_head.wins < report.trained.wins
    assert report.trained_beats_random_head > 0.6 * POSTERS
