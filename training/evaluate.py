"""Score a saved model version on any labelled set in the dataset layout."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from poster_genres.artifact import open_version
from poster_genres.classifier import GenreClassifier
from poster_genres.runtimes import RuntimeChoice
from training import metrics
from training.dataset import DatasetError, PosterBatches, check_images, image_path, load_labels


def evaluate(
    model_dir: Path,
    images: Path,
    csv: Path,
    *,
    split: str | None = None,
    batch_size: int = 16,
    runtime: RuntimeChoice = "auto",
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(model result, label-prior result) at the model's stored thresholds.

    `split` restricts the set to the Ids the model recorded for that split (e.g. "test").
    """
    loaded = open_version(model_dir)
    table = load_labels(csv)
    if table.genres != loaded.genres:
        raise DatasetError(f"{csv} lists genres {table.genres}, the model has {loaded.genres}")
    if split:
        if loaded.metadata.split is None or split not in loaded.metadata.split.ids:
            raise DatasetError(f"{model_dir} records no {split!r} split")
        wanted = set(loaded.metadata.split.ids[split])
        table = table.subset([i for i, pid in enumerate(table.ids) if pid in wanted])
    table, _ = check_images(table, images, strict=False)
    classifier = GenreClassifier.open(model_dir, runtime=runtime, max_batch=batch_size)
    batches = PosterBatches([image_path(images, i) for i in table.ids], None, batch_size=batch_size)
    probs = np.concatenate([classifier.predict(batches.inputs(i)) for i in range(len(batches))])
    prior = np.asarray(loaded.metadata.label_prior)
    model_result = metrics.score(table.labels, probs, loaded.thresholds, table.genres)
    model_result["predicted"] = metrics.decision_scores(table.labels, probs, classifier.rule)
    return (
        model_result,
        metrics.score(
            table.labels,
            metrics.prior_predictions(prior, len(table.ids)),
            loaded.thresholds,
            table.genres,
        ),
    )
