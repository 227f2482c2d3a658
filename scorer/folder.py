"""Score posters into CSV or JSON lines with the service's own classifier and decision rule.

Rows come in input order (a folder: sorted paths; a list: its order), one per file: the
probabilities and predicted genres, or the error code that file got.
"""

from __future__ import annotations

import csv
import json
import sys
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np
from tqdm import tqdm

from poster_genres.classifier import GenreClassifier
from poster_genres.decision import shown
from poster_genres.errors import PosterGenresError
from poster_genres.pipeline import PosterPipeline, PreparedPoster, Scored
from scorer.shards import atomic_output


@dataclass
class Summary:
    """What a run did: posters scored, files that failed (by error code), files passed over."""

    scored: int = 0
    failed: Counter[str] = field(default_factory=Counter)
    ignored: int = 0

    def describe(self) -> str:
        failed = ", ".join(f"{n} {code}" for code, n in sorted(self.failed.items()))
        parts = [f"scored {self.scored} posters"]
        parts.append(f"{sum(self.failed.values())} failed ({failed})" if failed else "0 failed")
        if self.ignored:
            parts.append(f"{self.ignored} files without an image name ignored")
        return ", ".join(parts)


class RowWriter:
    """Writes rows as CSV or JSON lines, chosen by the output's suffix. Probabilities are written
    as the service shows them (`decision.shown`), or as the model's full float32 with
    `full_precision`."""

    def __init__(
        self, handle: IO[str], as_csv: bool, genres: Sequence[str], full_precision: bool = False
    ) -> None:
        self.handle, self.genres = handle, list(genres)
        self.value = full_float32 if full_precision else shown
        self.csv = csv.writer(handle) if as_csv else None
        if self.csv:
            self.csv.writerow(["file", "predicted", "error", *self.genres])

    def error(self, name: str, code: str, message: str) -> None:
        if self.csv:
            self.csv.writerow([name, "", code])
        else:
            record = {"file": name, "error": {"code": code, "message": message}}
            self.handle.write(json.dumps(record) + "\n")

    def scored(self, name: str, scored: Scored) -> None:
        decision = scored.decision
        predicted = [g for g, _ in decision.predicted]
        values = [self.value(p) for p in scored.probabilities]
        if self.csv:
            self.csv.writerow([name, "|".join(predicted), "", *values])
            return
        record: dict[str, Any] = {
            "file": name,
            "predicted": predicted,
            "top_k": [{"genre": g, "probability": self.value(p)} for g, p in decision.top_k],
            "probabilities": dict(zip(self.genres, values, strict=True)),
        }
        self.handle.write(json.dumps(record) + "\n")


def full_float32(value: float) -> float:
    """The model's float32 exactly: the shortest decimal that reads back as the same float32."""
    return float(np.format_float_positional(np.float32(value), unique=True, trim="-"))


def _chunks(items: list[tuple[str, Path]], size: int) -> Iterator[list[tuple[str, Path]]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def score_posters(
    classifier: GenreClassifier,
    items: list[tuple[str, Path]],
    out: Path,
    *,
    top_k: int = 3,
    progress: bool = True,
    full_precision: bool = False,
) -> Summary:
    """Score (name, path) pairs into `out` (.csv or .jsonl), one row each, in the given order."""
    summary = Summary()
    # A reader (or a merge) never sees half a file: it appears at `out` only when complete.
    with (
        atomic_output(out) as handle,
        tqdm(total=len(items), unit="poster", disable=not progress, file=sys.stderr) as bar,
    ):
        writer = RowWriter(handle, out.suffix.lower() == ".csv", classifier.genres, full_precision)
        pipeline = PosterPipeline(classifier)
        for chunk in _chunks(items, classifier.max_batch):
            prepared: list[PreparedPoster] = []
            outcomes: list[int | tuple[str, str]] = []  # index into prepared, or (code, message)
            for _, path in chunk:
                try:
                    prepared.append(pipeline.prepare_file(path))
                    outcomes.append(len(prepared) - 1)
                except PosterGenresError as exc:
                    outcomes.append((exc.code, exc.message))
                except OSError as exc:
                    outcomes.append(("unreadable_file", exc.strerror or str(exc)))
            scored = pipeline.score(prepared, top_k)
            for (name, _), outcome in zip(chunk, outcomes, strict=True):
                if isinstance(outcome, int):
                    writer.scored(name, scored[outcome])
                    summary.scored += 1
                else:
                    writer.error(name, *outcome)
                    summary.failed[outcome[0]] += 1
            bar.update(len(chunk))
    return summary
