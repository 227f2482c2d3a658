"""Heatmap PNGs for a set of posters: where the model found each poster's most probable genre."""

from __future__ import annotations

import sys
from pathlib import Path

from tqdm import tqdm

from poster_genres.classifier import GenreClassifier
from poster_genres.errors import PosterGenresError
from poster_genres.pipeline import PosterPipeline, render_overlay


def heatmap_path(folder: Path, name: str, genre: str) -> Path:
    """`<folder>/<name without its suffix>.<genre>.png`, keeping the poster's sub-folders; a
    genre's own slash (N/A) becomes a dash."""
    relative = Path(name)
    safe_genre = genre.replace("/", "-")
    return folder / relative.parent / f"{relative.stem}.{safe_genre}.png"


def write_heatmaps(
    classifier: GenreClassifier,
    items: list[tuple[str, Path]],
    folder: Path,
    *,
    progress: bool = True,
) -> int:
    """One overlay PNG per readable poster, for its most probable genre, from the explainer of
    the classifier's runtime; returns how many."""
    explainer = classifier.explainer()
    pipeline = PosterPipeline(classifier)
    written = 0
    for name, path in tqdm(items, unit="heatmap", disable=not progress, file=sys.stderr):
        try:
            poster = pipeline.prepare_file(path)
        except (PosterGenresError, OSError):
            continue  # the scores file already says why
        genre_map = explainer.explain(poster.pixels)
        out = heatmap_path(folder, name, classifier.genres[genre_map.genre_index])
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(render_overlay(poster.decoded, genre_map).png)
        written += 1
    return written
