"""The offline folder scorer uses the service's classifier and reports unreadable files."""

from __future__ import annotations

import csv
import io
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from poster_genres.classifier import GenreClassifier
from poster_genres.decision import shown
from poster_genres.preprocessing import poster_to_input
from scorer.__main__ import main as score_cli
from tests.cli_process import run_without_tensorflow
from tests.conftest import TINY_GENRES, poster_bytes

PROJECT = Path(__file__).resolve().parents[1]


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
    assert [r["file"] for r in rows] == ["a.jpg", "broken.jpg", "sub/b.png"]  # input order
    assert rows[1]["error"] == "invalid_image"
    classifier = GenreClassifier.open(tiny_version, max_batch=4)
    expected = classifier.predict(poster_to_input((folder / "a.jpg").read_bytes())[None])[0]
    # Rounded as the service shows them (decision.shown), to the digit.
    assert [rows[0][g] for g in TINY_GENRES] == [str(shown(p)) for p in expected]


def test_scores_a_folder_into_json_lines(folder: Path, tiny_version: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    args = [str(folder), "--out", str(out), "--model-dir", str(tiny_version), "--quiet"]
    assert score_cli([*args, "--top-k", "2"]) == 0
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(records) == 3
    good = [r for r in records if "error" not in r]
    assert all(len(r["top_k"]) == 2 and list(r["probabilities"]) == TINY_GENRES for r in good)
    for record in good:
        values = [*record["probabilities"].values(), *(t["probability"] for t in record["top_k"])]
        assert values == [shown(v) for v in values]  # 4 decimals, like /predict


def test_full_precision_writes_the_models_float32(
    folder: Path, tiny_version: Path, tmp_path: Path
) -> None:
    out = tmp_path / "full.jsonl"
    argv = [str(folder), "--out", str(out), "--model-dir", str(tiny_version), "--quiet"]
    assert score_cli([*argv, "--full-precision"]) == 0
    record = json.loads(out.read_text().splitlines()[0])
    classifier = GenreClassifier.open(tiny_version, max_batch=4)
    expected = classifier.predict(poster_to_input((folder / "a.jpg").read_bytes())[None])[0]
    written = np.array([record["probabilities"][g] for g in TINY_GENRES], dtype=np.float32)
    np.testing.assert_array_equal(written, expected)  # every bit of the float32 survives
    assert any(len(repr(v)) > 8 for v in record["probabilities"].values())  # not rounded


def test_every_poster_of_several_chunks_gets_a_row(tiny_version: Path, tmp_path: Path) -> None:
    posters = tmp_path / "many"
    posters.mkdir()
    for i in range(7):  # chunks of 2: three full ones and a last poster alone
        (posters / f"p{i}.jpg").write_bytes(poster_bytes((30 * i, 40, 40)))
    out = tmp_path / "many.jsonl"
    argv = [str(posters), "--out", str(out), "--model-dir", str(tiny_version), "--batch-size", "2"]
    assert score_cli([*argv, "--quiet"]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["file"] for r in rows] == [f"p{i}.jpg" for i in range(7)]
    classifier = GenreClassifier.open(tiny_version, max_batch=2)
    last = classifier.predict(poster_to_input((posters / "p6.jpg").read_bytes())[None])[0]
    scored = next(r for r in rows if r["file"] == "p6.jpg")
    assert [scored["probabilities"][g] for g in TINY_GENRES] == [shown(p) for p in last]


def test_refused_formats_get_an_error_row_and_the_summary_counts_them(
    folder: Path, tiny_version: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (folder / "scan.bmp").write_bytes(poster_bytes(fmt="BMP"))
    out = tmp_path / "out.jsonl"
    argv = [str(folder), "--out", str(out), "--model-dir", str(tiny_version), "--quiet"]
    assert score_cli(argv) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["file"] for r in rows] == ["a.jpg", "broken.jpg", "scan.bmp", "sub/b.png"]
    assert rows[2]["error"]["code"] == "unsupported_format"
    assert rows[1]["error"] == {
        "code": "invalid_image",
        "message": "The file is not a readable JPEG, PNG, WebP or GIF image.",
    }
    summary = capsys.readouterr().err.strip().splitlines()[-1]
    assert summary.startswith("scored 2 posters, 2 failed (1 invalid_image, 1 unsupported_format)")
    assert "1 files without an image name ignored" in summary  # notes.txt


def test_a_list_of_paths_is_scored_in_its_order_from_a_file_or_stdin(
    folder: Path, tiny_version: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    listed = [folder / "sub" / "b.png", folder / "missing.jpg", folder / "a.jpg"]
    listing = tmp_path / "paths.txt"
    listing.write_text("# posters\n" + "\n".join(map(str, listed)) + "\n\n")
    out = tmp_path / "listed.csv"
    base = ["--list", "--out", str(out), "--model-dir", str(tiny_version), "--quiet"]
    assert score_cli([str(listing), *base]) == 0
    rows = list(csv.DictReader(out.read_text().splitlines()))
    assert [r["file"] for r in rows] == [str(p) for p in listed]
    assert [r["error"] for r in rows] == ["", "unreadable_file", ""]
    monkeypatch.setattr("sys.stdin", io.StringIO(listing.read_text()))
    assert score_cli(["-", *base]) == 0
    assert [r["file"] for r in csv.DictReader(out.read_text().splitlines())] == [
        str(p) for p in listed
    ]


def test_nothing_scored_exits_1(tiny_version: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    argv = ["--out", str(tmp_path / "o.csv"), "--model-dir", str(tiny_version), "--quiet"]
    assert score_cli([str(empty), *argv]) == 1
    (empty / "bad.jpg").write_bytes(b"nope")
    assert score_cli([str(empty), *argv]) == 1


@pytest.mark.parametrize(
    ("out", "message"),
    [
        ("genres.txt", "unknown format .txt; use .csv (CSV), .jsonl (JSON lines)"),
        ("missing-folder/genres.csv", "does not exist"),
    ],
)
def test_bad_output_paths_are_refused_before_the_model_loads(
    folder: Path, tmp_path: Path, out: str, message: str
) -> None:
    # A fresh process: the refusal must come before TensorFlow is even imported.
    result = run_without_tensorflow(
        "scorer.__main__:main", [str(folder), "--out", str(tmp_path / out)]
    )
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_help_answers_without_tensorflow() -> None:
    result = run_without_tensorflow("scorer.__main__:main", ["--help"])
    assert result.returncode == 0, result.stderr
    assert "--list" in result.stdout and ".csv or .jsonl" in result.stdout


def test_tensorflow_start_up_chatter_is_silenced(
    folder: Path, tiny_version: Path, tmp_path: Path
) -> None:
    out = tmp_path / "quiet.csv"
    argv = [str(folder), "--out", str(out), "--model-dir", str(tiny_version), "--quiet"]
    result = subprocess.run(
        [sys.executable, "-m", "scorer", *argv],
        cwd=PROJECT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip().splitlines() == [
        f"scored 2 posters, 1 failed (1 invalid_image), 1 files without an image name ignored; "
        f"wrote {out}"
    ]


def test_explain_writes_a_heatmap_per_readable_poster_for_its_top_genre(
    folder: Path, tiny_version: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from PIL import Image

    out, maps = tmp_path / "out.jsonl", tmp_path / "maps" / "new"
    argv = [str(folder), "--out", str(out), "--model-dir", str(tiny_version)]
    assert score_cli([*argv, "--explain", str(maps)]) == 0
    rows = {r["file"]: r for r in map(json.loads, out.read_text().splitlines())}
    expected = {
        Path(name).parent / f"{Path(name).stem}.{row['top_k'][0]['genre'].replace('/', '-')}.png"
        for name, row in rows.items()
        if "error" not in row
    }
    written = {p.relative_to(maps) for p in maps.rglob("*.png")}
    assert written == expected and len(written) == 2  # a.jpg and sub/b.png; broken.jpg has none
    with Image.open(next(maps.glob("a.*.png"))) as image:
        assert image.format == "PNG" and image.size == (60, 90)  # the poster's own shape
    assert "wrote 2 heatmaps" in capsys.readouterr().err


def test_an_unwritable_explain_folder_is_refused_before_the_model_loads(
    folder: Path, tmp_path: Path
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    argv = [str(folder), "--out", str(tmp_path / "o.csv"), "--explain", str(blocker / "x")]
    result = run_without_tensorflow("scorer.__main__:main", argv)
    assert result.returncode == 2
    assert "--explain" in result.stderr and "Traceback" not in result.stderr


def test_ctrl_c_ends_the_scorer_with_130_and_one_line(
    folder: Path, tiny_version: Path, tmp_path: Path
) -> None:
    argv = [str(folder), "--out", str(tmp_path / "o.csv"), "--model-dir", str(tiny_version)]
    argv += ["--runtime", "keras"]  # stopped while TensorFlow loads; LiteRT would be done by then
    process = subprocess.Popen(
        [sys.executable, "-m", "scorer", *argv], cwd=PROJECT, stderr=subprocess.PIPE, text=True
    )
    time.sleep(1.5)  # importing TensorFlow
    assert process.poll() is None
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130
    assert stderr.strip().splitlines() == ["interrupted (Ctrl+C)"]
