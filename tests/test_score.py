"""The offline folder scorer uses the service's classifier and reports unreadable files."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from poster_genres.artifact import load_version
from poster_genres.classifier import GenreClassifier
from poster_genres.preprocessing import poster_to_input
from scorer.__main__ import main as score_cli
from tests.conftest import TINY_GENRES, poster_bytes


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    posters = tmp_path / "posters"
    (posters / "sub").mkdir(parents=True)
    (posters / "a.jpg").write_bytes(poster_bytes((200, 30, 30)))
    (posters / "sub" / "b.png").write_bytes(poster_bytes((30, 30, 200), fmt="PNG"))
    (posters / "broken.jpg").write_bytes(b"nope")
    (posters / "notes.txt").write_text("not a poster")
    return posters


def test_scores_a_folder_into_csv(folder: Path, tiny_version: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.csv"
    assert score_cli([str(folder), "--out", str(out), "--model-dir", str(tiny_version)]) == 0
    rows = list(csv.DictReader(out.read_text().splitlines()))
    assert [r["file"] for r in rows] == ["broken.jpg", "a.jpg", "sub/b.png"]
    assert rows[0]["error"] == "invalid_image"
    classifier = GenreClassifier(load_version(tiny_version), max_batch=4)
    expected = classifier.predict(poster_to_input((folder / "a.jpg").read_bytes())[None])[0]
    np.testing.assert_allclose([float(rows[1][g]) for g in TINY_GENRES], expected, atol=1e-5)
    assert rows[1]["predicted"]


def test_scores_a_folder_into_json_lines(folder: Path, tiny_version: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    args = [str(folder), "--out", str(out), "--model-dir", str(tiny_version), "--quiet"]
    assert score_cli([*args, "--top-k", "2"]) == 0
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(records) == 3
    good = [r for r in records if "error" not in r]
    assert all(len(r["top_k"]) == 2 and list(r["probabilities"]) == TINY_GENRES for r in good)


def test_every_poster_of_several_chunks_gets_a_row(tiny_version: Path, tmp_path: Path) -> None:
    posters = tmp_path / "many"
    posters.mkdir()
    for i in range(7):  # chunks of 2: three full ones and a last poster alone
        (posters / f"p{i}.jpg").write_bytes(poster_bytes((30 * i, 40, 40)))
    out = tmp_path / "many.jsonl"
    argv = [str(posters), "--out", str(out), "--model-dir", str(tiny_version), "--batch-size", "2"]
    assert score_cli([*argv, "--quiet"]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted(r["file"] for r in rows) == [f"p{i}.jpg" for i in range(7)]
    classifier = GenreClassifier(load_version(tiny_version), max_batch=2)
    last = classifier.predict(poster_to_input((posters / "p6.jpg").read_bytes())[None])[0]
    scored = next(r for r in rows if r["file"] == "p6.jpg")
    np.testing.assert_allclose([scored["probabilities"][g] for g in TINY_GENRES], last, atol=1e-5)
