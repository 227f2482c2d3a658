"""Record a version's drift reference: its `predicted` rates on posters it never trained on."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from poster_genres.artifact import ModelVersion, open_version, update_metadata
from poster_genres.classifier import GenreClassifier
from poster_genres.drift import DriftReference, build_reference
from poster_genres.runtimes import RuntimeChoice
from training.dataset import DatasetError, PosterBatches, image_path


def held_out_ids(version: ModelVersion) -> tuple[list[str], list[str]]:
    """(split names, poster Ids) of the recorded splits the shipped weights never trained on."""
    split = version.metadata.split
    if split is None:
        raise DatasetError(f"{version.path} records no split: nothing is known to be held out")
    names = [name for name in split.ids if name not in split.trained_on]
    if not names:
        raise DatasetError(f"{version.path} trained on every split it records")
    return names, [poster for name in names for poster in split.ids[name]]


def record_drift_reference(
    model_dir: Path, images: Path, *, runtime: RuntimeChoice = "auto", batch_size: int = 16
) -> DriftReference:
    """Score the held-out posters, bootstrap the PSI threshold, and write both into the metadata."""
    version = open_version(model_dir)  # every model file hashed once, here
    names, ids = held_out_ids(version)
    paths = [image_path(images, poster) for poster in ids]
    found = [path for path in paths if path.is_file()]
    if not found:
        raise DatasetError(f"none of the {len(ids)} held-out posters is in {images}")
    classifier = GenreClassifier.from_version(version, runtime=runtime, max_batch=batch_size)
    batches = PosterBatches(found, None, batch_size=batch_size)
    probabilities = np.concatenate(
        [classifier.predict(batches.inputs(i)) for i in range(len(batches))]
    ).astype(np.float64)
    splits = f"the {' and '.join(names)} split" + ("s" if len(names) > 1 else "")
    source = f"{splits} ({len(found)} posters) under {classifier.runtime}"
    reference = build_reference(probabilities, classifier.rule, source)
    update_metadata(model_dir, lambda metadata: metadata.model_copy(update={"drift": reference}))
    return reference
