"""Sharded batch scoring: a stable split by path hash, N worker processes, and the merge."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from scorer.merge import main as merge_cli
from scorer.shards import MergeError, Shard, merge_parts, write_shard_record
from tests.conftest import poster_bytes

PROJECT = Path(__file__).resolve().parents[1]


def test_shard_parses_i_of_n_and_refuses_anything_else() -> None:
    assert Shard.parse("0/4") == Shard(0, 4) and Shard.parse(" 3 / 4 ") == Shard(3, 4)
    for bad in ("4/4", "-1/4", "1/0", "1", "a/b", "1/4/2", ""):
        with pytest.raises(ValueError, match="--shard"):
            Shard.parse(bad)


def test_every_name_falls_in_exactly_one_shard_whatever_the_order() -> None:
    names = [f"dir{i % 7}/poster-{i}.jpg" for i in range(3000)]
    items = [(name, None) for name in names]
    taken = [Shard(i, 5).take(items) for i in range(5)]
    assert sorted(n for part in taken for n, _ in part) == sorted(names)
    assert all(450 <= len(part) <= 750 for part in taken)  # roughly even: 600 each expected
    again = Shard(2, 5).take(list(reversed(items)))
    assert sorted(again) == sorted(taken[2])
    # The split is a property of the name alone (sha256), not of Python's per-process hash():
    # pinned, so that a change of hash (which would re-split running jobs) is seen.
    names = ["a.jpg", "b.jpg", "sub/c.png", "tt0111161.jpg"]
    assert [next(i for i in range(4) if Shard(i, 4).holds(n)) for n in names] == [2, 2, 2, 0]


def write_part(path: Path, header: list[str], rows: list[list[str]], shard: str) -> None:
    with path.open("w", newline="") as handle:
        csv.writer(handle).writerows([header, *rows])
    write_shard_record(path, Shard.parse(shard), len(rows))


HEADER = ["file", "predicted", "error", "Drama"]


def test_merge_streams_parts_in_path_order(tmp_path: Path) -> None:
    write_part(tmp_path / "p0.csv", HEADER, [["sub/b.jpg", "Drama", "", "0.9"]], "0/2")
    write_part(
        tmp_path / "p1.csv", HEADER, [["a.jpg", "", "", "0.1"], ["sub-c.jpg", "", "", "0"]], "1/2"
    )
    out = tmp_path / "all.csv"
    assert merge_parts([tmp_path], out) == 3
    # Path order, as a folder run writes: "sub/b.jpg" before "sub-c.jpg" (parts compare first).
    rows = list(csv.reader(out.read_text().splitlines()))
    assert [r[0] for r in rows] == ["file", "a.jpg", "sub/b.jpg", "sub-c.jpg"]
    assert rows[2] == ["sub/b.jpg", "Drama", "", "0.9"]


@pytest.mark.parametrize(
    ("parts", "message"),
    [
        (
            {"p0.csv": ("0/2", [["a.jpg"]]), "p1.csv": ("1/2", [["a.jpg"]])},
            r"a\.jpg is in two parts",
        ),
        ({"p0.csv": ("0/3", [["a.jpg"]]), "p1.csv": ("1/3", [["b.jpg"]])}, r"shards \[2\] of 3"),
        ({"p0.csv": ("0/2", [["a.jpg"]]), "p1.csv": ("0/2", [["b.jpg"]])}, "both shard 0/2"),
        ({"p0.csv": ("0/2", [["a.jpg"]]), "p1.csv": ("1/3", [["b.jpg"]])}, "not one"),
        ({"p0.csv": ("0/2", [["b.jpg"], ["a.jpg"]]), "p1.csv": ("1/2", [])}, "not in path order"),
    ],
)
def test_merge_refuses_parts_that_are_not_one_whole_set(
    tmp_path: Path, parts: dict[str, tuple[str, list[list[str]]]], message: str
) -> None:
    for name, (shard, rows) in parts.items():
        write_part(tmp_path / name, HEADER, [[*r, "", "", "0"] for r in rows], shard)
    with pytest.raises(MergeError, match=message):
        merge_parts([tmp_path], tmp_path / "x.csv")
    assert not (tmp_path / "x.csv").exists() and not list(tmp_path.glob(".*partial"))


def test_merge_refuses_other_columns_and_parts_without_a_record(tmp_path: Path) -> None:
    write_part(tmp_path / "p0.csv", HEADER, [], "0/2")
    write_part(tmp_path / "p1.csv", ["file", "predicted", "error", "Comedy"], [], "1/2")
    with pytest.raises(MergeError, match="other columns"):
        merge_parts([tmp_path], tmp_path / "x.csv")
    (tmp_path / "p1.csv.shard.json").unlink()
    assert merge_cli([str(tmp_path), "--out", str(tmp_path / "x.csv")]) == 1


def scorer(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "scorer", "--quiet", *argv],
        cwd=PROJECT,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_three_shard_processes_merged_equal_one_run_row_for_row(
    tmp_path: Path, tiny_version: Path, suffix: str
) -> None:
    posters = tmp_path / "posters"
    for i in range(30):
        folder = posters / f"batch{i % 3}"
        folder.mkdir(parents=True, exist_ok=True)
        colour = (40 + 7 * i, 200 - 5 * i, (90 * i) % 256)
        (folder / f"p{i:02d}.jpg").write_bytes(poster_bytes(colour, square=i % 2 == 0))
    (posters / "broken.jpg").write_bytes(b"not an image")
    model = ["--model-dir", str(tiny_version), "--batch-size", "4"]
    whole = tmp_path / f"whole{suffix}"
    assert scorer(str(posters), "--out", str(whole), *model).returncode == 0
    parts = tmp_path / "parts"
    parts.mkdir()
    workers = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "scorer",
                "--quiet",
                str(posters),
                "--shard",
                f"{i}/3",
                "--out",
                str(parts / f"part-{i}{suffix}"),
                *model,
            ],
            cwd=PROJECT,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(3)
    ]
    for worker in workers:
        _, err = worker.communicate(timeout=300)
        assert worker.returncode == 0, err
    merged = tmp_path / f"merged{suffix}"
    assert merge_cli([str(parts), "--out", str(merged)]) == 0
    # Row for row: the same posters in the same order, the same predicted lists, and the same
    # probabilities as written (a poster's probabilities do not depend on its batch).
    assert merged.read_text() == whole.read_text()
    lines = whole.read_text().splitlines()
    assert len(lines) == 31 + (suffix == ".csv")
    parts_written = sorted(parts.glob(f"part-*{suffix}"))
    assert len(parts_written) == 3 and len(list(parts.glob("*.shard.json"))) == 3
    sizes = [len(p.read_text().splitlines()) - (suffix == ".csv") for p in parts_written]
    assert sum(sizes) == 31 and all(size > 0 for size in sizes)
    if suffix == ".jsonl":
        assert json.loads(lines[0])["file"] == "batch0/p00.jpg"


def test_a_shard_with_no_posters_writes_a_header_and_succeeds(
    tmp_path: Path, tiny_version: Path
) -> None:
    posters = tmp_path / "posters"
    posters.mkdir()
    (posters / "a.jpg").write_bytes(poster_bytes())
    empty = next(i for i in range(4) if not Shard(i, 4).holds("a.jpg"))
    out = tmp_path / "part.csv"
    done = scorer(
        str(posters), "--shard", f"{empty}/4", "--out", str(out), "--model-dir", str(tiny_version)
    )
    assert done.returncode == 0, done.stderr
    assert out.read_text().splitlines()[0].startswith("file,predicted,error,")
    assert len(out.read_text().splitlines()) == 1
