"""Score a folder of posters into CSV or JSON lines with the service's own classifier and rule."""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from tqdm import tqdm

from poster_genres.classifier import GenreClassifier
from poster_genres.errors import PosterGenresError
from poster_genres.preprocessing import decode_poster, to_model_input

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".gif"}


def _chunks(paths: list[Path], size: int) -> Iterator[list[Path]]:
    for start in range(0, len(paths), size):
        yield paths[start : start + size]


def score_folder(
    classifier: GenreClassifier, folder: Path, out: Path, *, top_k: int = 3, progress: bool = True
) -> tuple[int, int]:
    """Write one row per poster (probabilities, predicted genres or the error); (scored, failed)."""
    paths = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    as_csv = out.suffix.lower() == ".csv"
    scored = failed = 0
    with (
        out.open("w", newline="", encoding="utf-8") as handle,
        tqdm(total=len(paths), unit="poster", disable=not progress, file=sys.stderr) as bar,
    ):
        writer = csv.writer(handle) if as_csv else None
        if writer:
            writer.writerow(["file", "predicted", "error", *classifier.genres])
        for chunk in _chunks(paths, classifier.max_batch):
            inputs, good = [], []
            for path in chunk:
                try:
                    inputs.append(to_model_input(decode_poster(path.read_bytes()).image))
                    good.append(path)
                except (PosterGenresError, OSError) as exc:
                    failed += 1
                    message = getattr(exc, "code", type(exc).__name__)
                    if writer:
                        writer.writerow([str(path.relative_to(folder)), "", message])
                    else:
                        record = {"file": str(path.relative_to(folder)), "error": message}
                        handle.write(json.dumps(record) + "\n")
            probabilities = (
                classifier.predict(np.stack(inputs))
                if inputs
                else np.zeros((0, len(classifier.genres)))
            )
            for path, row in zip(good, probabilities, strict=True):
                decision = classifier.decide(row, top_k)
                predicted = [g for g, _ in decision.predicted]
                name = str(path.relative_to(folder))
                if writer:
                    writer.writerow([name, "|".join(predicted), "", *(f"{p:.6f}" for p in row)])
                else:
                    record = {
                        "file": name,
                        "predicted": predicted,
                        "top_k": [{"genre": g, "probability": p} for g, p in decision.top_k],
                        "probabilities": dict(zip(classifier.genres, map(float, row), strict=True)),
                    }
                    handle.write(json.dumps(record) + "\n")
                scored += 1
            bar.update(len(chunk))
    return scored, failed
