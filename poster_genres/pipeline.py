"""The one sequence from a poster to a decision, and from a poster to its evidence overlay.

    bytes -> DecodedPoster -> model pixels -> probabilities -> Decision
    DecodedPoster + GenreMap -> overlay PNG

The service, the scorer and the heatmaps all go through `PosterPipeline`. Only the service puts
something between the pixels and the model: a micro-batcher that gathers several requests' posters
into one call of `classifier.predict`, the same call `PosterPipeline.score` makes.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from poster_genres.classifier import GenreClassifier
from poster_genres.decision import Decision
from poster_genres.heatmap import overlay, png_bytes
from poster_genres.maps import GenreMap
from poster_genres.preprocessing import (
    DEFAULT_MAX_PIXELS,
    DecodedPoster,
    decode_poster,
    to_model_pixels,
)


@dataclass(frozen=True)
class PreparedPoster:
    """A poster ready for the model: what was decoded, its 8-bit model pixels (400, 400, 3), and
    how long each stage took."""

    decoded: DecodedPoster
    pixels: np.ndarray
    decode_s: float
    preprocess_s: float


@dataclass(frozen=True)
class Scored:
    """One poster's probabilities (N,) in the version's genre order, and its decision."""

    probabilities: np.ndarray
    decision: Decision


@dataclass(frozen=True)
class Overlay:
    """An evidence map drawn over the poster, as PNG bytes."""

    png: bytes
    width: int
    height: int


def prepare_poster(data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> PreparedPoster:
    """Decode an upload and turn it into model pixels, timing both stages. Raises the core's
    `PosterGenresError`s for anything that is not a poster it can read."""
    started = time.perf_counter()
    decoded = decode_poster(data, max_pixels=max_pixels)
    decoded_at = time.perf_counter()
    pixels = to_model_pixels(decoded.image)
    return PreparedPoster(decoded, pixels, decoded_at - started, time.perf_counter() - decoded_at)


def render_overlay(decoded: DecodedPoster, genre_map: GenreMap) -> Overlay:
    """`genre_map`'s grid drawn over the poster as the client sent it (shrunk, if large)."""
    image = overlay(decoded.image, genre_map.grid)
    return Overlay(png_bytes(image), image.size[0], image.size[1])


class PosterPipeline:
    """A classifier's whole pipeline, for callers that score posters themselves (the scorer, the
    heatmaps); the service uses its stages one by one."""

    def __init__(self, classifier: GenreClassifier, *, max_pixels: int = DEFAULT_MAX_PIXELS):
        self.classifier = classifier
        self.max_pixels = max_pixels

    def prepare(self, data: bytes) -> PreparedPoster:
        return prepare_poster(data, max_pixels=self.max_pixels)

    def prepare_file(self, path: Path) -> PreparedPoster:
        """As `prepare`; OSError when the file cannot be read."""
        return self.prepare(path.read_bytes())

    def score(self, posters: Sequence[PreparedPoster], top_k: int) -> list[Scored]:
        """Probabilities and decisions for prepared posters, in order, in batched model calls."""
        if not posters:
            return []
        probabilities = self.classifier.predict(np.stack([p.pixels for p in posters]))
        return [Scored(row, self.classifier.decide(row, top_k)) for row in probabilities]
