"""Evidence maps without a runtime: what an explainer returns, and the interface both runtimes'
explainers share (Grad-CAM through Keras in `explain`, CAM through LiteRT in
`runtimes.litert_runtime`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

import numpy as np

from poster_genres.preprocessing import INPUT_SHAPE

# For the shipped heads (global average pooling, then one Dense layer) the two are the same map:
# Grad-CAM's channel weights are the Dense kernel's column divided by the number of cells.
MapMethod = Literal["grad-cam", "cam"]


@dataclass(frozen=True)
class GenreMap:
    """One genre's evidence map for one poster."""

    genre_index: int
    probability: float
    probabilities: np.ndarray  # every genre's, for this poster (n_genres,)
    grid: np.ndarray  # (rows, cols) float32 in [0, 1], row 0 at the top of the poster


class Explainer(Protocol):
    """Where the evidence for a genre lies in one poster's uint8 pixels (400, 400, 3)."""

    method: MapMethod
    genres: list[str]
    grid_shape: tuple[int, int]

    def warm_up(self) -> None: ...

    def explain(self, pixels: np.ndarray, genre_index: int | None = None) -> GenreMap: ...


def peak_scaled(cam: np.ndarray) -> np.ndarray:
    """A map scaled so its strongest cell is 1; all zeros when no cell has positive evidence."""
    grid = np.maximum(np.asarray(cam, dtype=np.float32), 0.0)
    peak = float(grid.max())
    return grid / peak if peak > 0 else np.zeros_like(grid)


def check_request(pixels: np.ndarray, genre_index: int | None, n_genres: int) -> None:
    """The checks every explainer makes on its arguments."""
    if pixels.shape != INPUT_SHAPE or pixels.dtype != np.uint8:
        raise ValueError(f"expected uint8 pixels of shape {INPUT_SHAPE}, got {pixels.shape}")
    if genre_index is not None and not 0 <= genre_index < n_genres:
        raise ValueError(f"genre index {genre_index} is out of range")
