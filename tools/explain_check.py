"""Do the heatmaps carry information? The deletion test, genre-to-genre difference, and a sanity check.

    .venv/bin/python -m tools.explain_check [--posters 40] [--out bench/EXPLAIN.md]

- Deletion: for each poster and its top genre, the heatmap's highest 20% of grid cells are filled
  with the poster's mean colour and the drop in that genre's probability is compared with the mean
  drop over 10 random masks of the same number of cells. A heatmap that carries information wins.
- Two genres of one poster: the Spearman correlation of their maps (top-1 vs top-2 genre).
- Sanity (Adebayo et al., 2018, cascading randomisation): maps from the same model with its top
  layers' weights replaced by random ones, scored by the deletion test on the real model, must lose
  their edge; if they did not, the maps would show the poster's busy parts whatever the model had
  learned. Two depths: the Dense head alone, and the head in EfficientNet's sense (the last
  MBConv block, the 1x1 head convolution and the Dense: the top 5 layers with weights).

Posters: the shipped version's own test split (never trained on), first by Id. Used by the test
suite (tests/test_explain_real.py) and for the figures in docs/explanations.md.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from devkit.dataset import IMAGES, PROJECT
from poster_genres.preprocessing import pixels_to_input

FRACTION = 0.2
RANDOM_MASKS = 10


@dataclass(frozen=True)
class DeletionResult:
    poster: str
    genre: str
    probability: float
    heatmap_drop: float
    random_drop: float  # mean over the random masks

    @property
    def heatmap_wins(self) -> bool:
        return self.heatmap_drop > self.random_drop


@dataclass(frozen=True)
class Summary:
    results: list[DeletionResult]

    @property
    def mean_heatmap_drop(self) -> float:
        return float(np.mean([r.heatmap_drop for r in self.results]))

    @property
    def mean_random_drop(self) -> float:
        return float(np.mean([r.random_drop for r in self.results]))

    @property
    def wins(self) -> int:
        return sum(r.heatmap_wins for r in self.results)

    def line(self, label: str) -> str:
        return (
            f"{label}: {len(self.results)} posters, mean drop {self.mean_heatmap_drop:.4f} with the "
            f"heatmap's top 20% vs {self.mean_random_drop:.4f} with random 20% masks; "
            f"heatmap wins on {self.wins}/{len(self.results)}"
        )


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rank correlation with average ranks for ties (ReLU maps have many zeros)."""

    def ranks(x: np.ndarray) -> np.ndarray:
        flat = x.ravel()
        order = np.argsort(flat, kind="stable")
        r = np.empty(len(flat), dtype=np.float64)
        r[order] = np.arange(len(flat), dtype=np.float64)
        for value in np.unique(flat):
            tied = flat == value
            r[tied] = r[tied].mean()
        return r

    ra, rb = ranks(a), ranks(b)
    ra, rb = ra - ra.mean(), rb - rb.mean()
    denominator = float(np.sqrt((ra**2).sum() * (rb**2).sum()))
    return float((ra * rb).sum() / denominator) if denominator else 0.0


def top_cells(grid: np.ndarray, fraction: float = FRACTION) -> np.ndarray:
    """Flat indices of the `fraction` highest cells (ties broken by position, deterministically)."""
    count = max(1, round(fraction * grid.size))
    return np.argsort(-grid.ravel(), kind="stable")[:count]


def masked(pixels: np.ndarray, grid_shape: tuple[int, int], cells: np.ndarray) -> np.ndarray:
    """The poster's float input with the given grid cells filled with its mean colour."""
    image = pixels_to_input(pixels)
    mean = image.reshape(-1, 3).mean(axis=0)
    rows, cols = grid_shape
    height, width = image.shape[:2]
    for cell in cells:
        r, c = divmod(int(cell), cols)
        image[
            r * height // rows : (r + 1) * height // rows,
            c * width // cols : (c + 1) * width // cols,
        ] = mean
    return image


def deletion(
    predict: Callable[[np.ndarray], np.ndarray],
    pixels: np.ndarray,
    grid: np.ndarray,
    genre: int,
    rng: np.random.Generator,
) -> tuple[float, float, float]:
    """(probability, drop with the heatmap's top cells, mean drop with random cells)."""
    count = len(top_cells(grid))
    masks = [top_cells(grid)] + [
        rng.choice(grid.size, size=count, replace=False) for _ in range(RANDOM_MASKS)
    ]
    batch = np.stack(
        [pixels_to_input(pixels)] + [masked(pixels, grid.shape, cells) for cells in masks]
    )
    probabilities = predict(batch)[:, genre]
    drops = probabilities[0] - probabilities[1:]
    return float(probabilities[0]), float(drops[0]), float(drops[1:].mean())


def held_out_posters(version_dir: Path, count: int) -> list[Path]:
    """The first `count` posters (by Id) of the version's test split that exist on disk."""
    from poster_genres.metadata import read_metadata

    metadata = read_metadata(version_dir / "metadata.json")
    ids = sorted(metadata.split.ids.get("test", [])) if metadata.split else []
    paths = [IMAGES / f"{i}.jpg" for i in ids]
    return [p for p in paths if p.is_file()][:count]


def weighted_layers(model: object) -> list[object]:
    """Layers with a kernel, in order, looking inside nested models (the backbone)."""
    import keras

    found: list[object] = []
    for layer in model.layers:  # type: ignore[attr-defined]  # a keras.Model
        if isinstance(layer, keras.Model):
            found += weighted_layers(layer)
        elif any(w.name in ("kernel", "depthwise_kernel") for w in layer.weights):
            found.append(layer)
    return found


def randomise_top(version_dir: Path, layers: int, seed: int) -> object:
    """The model of `version_dir` with its top `layers` kernels redrawn (normal, same std)."""
    from poster_genres.artifact import load_version

    loaded = load_version(version_dir)
    rng = np.random.default_rng(seed)
    for layer in weighted_layers(loaded.model)[-layers:]:
        for weight in layer.weights:  # type: ignore[attr-defined]  # a keras layer
            if weight.name in ("kernel", "depthwise_kernel"):
                values = np.asarray(weight)
                weight.assign(rng.normal(0.0, values.std(), values.shape).astype(np.float32))
    return loaded


# (label, top layers randomised)
SANITY_DEPTHS = (("Dense head", 1), ("last block + head conv + Dense", 5))


@dataclass(frozen=True)
class Report:
    trained: Summary
    random_heads: dict[str, Summary]
    genre_correlations: list[float]

    @property
    def random_head(self) -> Summary:
        """The shallowest randomisation: the Dense head alone."""
        return self.random_heads[SANITY_DEPTHS[0][0]]

    @property
    def trained_beats_random_head(self) -> int:
        """Posters whose trained map removes more of the genre than the random-head map does."""
        pairs = zip(self.trained.results, self.random_head.results, strict=True)
        return sum(t.heatmap_drop > r.heatmap_drop for t, r in pairs)

    def lines(self) -> list[str]:
        return [
            self.trained.line("Grad-CAM, shipped model"),
            *(
                summary.line(f"Sanity, maps with random weights in the {label}")
                for label, summary in self.random_heads.items()
            ),
            f"Shipped model's map removes more of the genre than the random-Dense map on "
            f"{self.trained_beats_random_head}/{len(self.trained.results)} posters",
            f"Top-1 vs top-2 genre maps of one poster: mean Spearman "
            f"{np.mean(self.genre_correlations):.3f} over {len(self.genre_correlations)} posters",
        ]


def evaluate(version_dir: Path, posters: list[Path], seed: int = 0) -> Report:
    """All three checks on `posters`, with the model of `version_dir`."""
    from poster_genres.artifact import load_version
    from poster_genres.classifier import GenreClassifier
    from poster_genres.explain import GenreExplainer
    from poster_genres.preprocessing import decode_poster, to_model_pixels

    loaded = load_version(version_dir)
    classifier = GenreClassifier.open(version_dir, max_batch=16)
    explainer = GenreExplainer(loaded)
    randomised = {
        label: GenreExplainer(randomise_top(version_dir, depth, seed))  # type: ignore[arg-type]  # a LoadedModel
        for label, depth in SANITY_DEPTHS
    }

    trained: list[DeletionResult] = []
    random_heads: dict[str, list[DeletionResult]] = {label: [] for label in randomised}
    correlations = []
    for path in posters:
        pixels = to_model_pixels(decode_poster(path.read_bytes()).image)
        first = explainer.explain(pixels)  # the most probable genre
        genre = first.genre_index
        second_index = int(np.argsort(-first.probabilities)[1])
        second = explainer.explain(pixels, second_index)
        correlations.append(spearman(first.grid, second.grid))
        maps = [(first.grid, trained)] + [
            (randomised[label].explain(pixels, genre).grid, out)
            for label, out in random_heads.items()
        ]
        for grid, out in maps:
            probability, drop, random_drop = deletion(
                classifier.predict, pixels, grid, genre, np.random.default_rng(seed)
            )
            out.append(
                DeletionResult(path.stem, loaded.genres[genre], probability, drop, random_drop)
            )
    return Report(Summary(trained), {k: Summary(v) for k, v in random_heads.items()}, correlations)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.explain_check", description=__doc__)
    parser.add_argument("--posters", type=int, default=40)
    parser.add_argument("--version", default=None, help="default: the newest in model_store/")
    parser.add_argument("--out", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args(argv)
    from poster_genres.artifact import resolve_version_dir

    version_dir = resolve_version_dir(PROJECT / "model_store", "poster-genres", args.version)
    posters = held_out_posters(version_dir, args.posters)
    if not posters:
        print(f"no test-split posters under {IMAGES}", file=sys.stderr)
        return 1
    report = evaluate(version_dir, posters)
    for line in report.lines():
        print(line)
    if args.out:
        args.out.write_text(
            f"# Explanations: do the heatmaps carry information?\n\n"
            f"`python -m tools.explain_check --posters {args.posters}` on {version_dir.name}, "
            f"{len(posters)} posters of its test split.\n\n"
            + "\n".join(f"- {line}" for line in report.lines())
            + "\n"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
