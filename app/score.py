"""Score a folder of posters offline into CSV or JSON lines, with the service's own classifier.

python -m app.score POSTERS_DIR --out genres.csv      # or .jsonl
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from tqdm import tqdm

from app.classifier import GenreClassifier
from app.config import get_settings
from app.errors import ServiceError
from app.imaging import decode_poster, to_model_input
from app.model_store import load_version, resolve_version_dir

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
                except (ServiceError, OSError) as exc:
                    failed += 1
                    message = getattr(exc, "code", type(exc).__name__)
                    if writer:
                        writer.writerow([str(path.relative_to(folder)), "", message])
                    else:
                        record = {"file": str(path.relative_to(folder)), "error": message}
                        handle.write(json.dumps(record) + "\n")
            probabilities = classifier.predict(np.stack(inputs)) if inputs else []
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m app.score", description=__doc__)
    parser.add_argument("folder", type=Path, help="folder of posters (searched recursively)")
    parser.add_argument("--out", type=Path, required=True, help="output .csv or .jsonl")
    parser.add_argument("--top-k", type=int, default=3)
    parser.add_argument("--model-dir", type=Path, default=None, help="default: the configured one")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    if not args.folder.is_dir():
        parser.error(f"{args.folder} is not a folder")
    settings = get_settings()
    path = args.model_dir or resolve_version_dir(
        settings.model_store, settings.model_name, settings.model_version
    )
    classifier = GenreClassifier(load_version(path), max_batch=settings.max_batch_size)
    scored, failed = score_folder(
        classifier, args.folder, args.out, top_k=args.top_k, progress=not args.quiet
    )
    print(f"scored {scored} posters, {failed} could not be read; wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
