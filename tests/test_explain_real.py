"""The heatmaps carry information about the shipped model (tools/explain_check.py on real posters)."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.config import PROJECT_ROOT
from poster_genres.artifact import resolve_version_dir
from tools.explain_check import Report, evaluate, held_out_posters

POSTERS = 32


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


def test_random_head_weights_take_most_of_the_maps_edge_away(report: Report) -> None:
    """The maps read the trained head: with random head weights they remove far less of the genre,
    and the trained maps beat them on most posters. (They still beat random masks on average: the
    backbone, kept, lights up the poster's busy parts whatever the head.)"""
    assert report.random_head.mean_heatmap_drop < 0.75 * report.trained.mean_heatmap_drop
    assert report.random_head.wins < report.trained.wins
    assert report.trained_beats_random_head > 0.6 * POSTERS
