"""Linear probe: do the converted ImageNet weights carry useful features, or only look right?

A faithful port of wrong weights would still match the reference activations, so this trains the same
logistic-regression head on frozen Lite0 features twice, with the converted weights and with random
ones, and scores both on the validation split. A research tool, run by hand:

    .venv/bin/python tools/linear_probe.py --record model_store/poster-genres/VERSION
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import keras
import numpy as np
from keras import layers

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from devkit.dataset import IMAGES, LABELS
from poster_genres.preprocessing import INPUT_SHAPE
from training import metrics
from training.dataset import PosterBatches, image_path, load_labels, split_indices
from training.efficientnet_lite import (
    build_backbone,
    load_imagenet_weights,
    scale_pixels,
)
from training.export import record_probe


def feature_extractor(pretrained: bool, internal_size: int = 224) -> keras.Model:
    backbone = build_backbone(internal_size)
    if pretrained:
        load_imagenet_weights(backbone)
    inputs = keras.Input(shape=INPUT_SHAPE)
    x = layers.Resizing(internal_size, internal_size, antialias=True)(inputs)
    x = backbone(scale_pixels()(x), training=False)
    return keras.Model(inputs, layers.GlobalAveragePooling2D()(x))


def _fit_probe(train_x: np.ndarray, train_y: np.ndarray, seed: int) -> keras.Model:
    keras.utils.set_random_seed(seed)
    probe = keras.Sequential(
        [keras.Input((train_x.shape[1],)), layers.Dense(train_y.shape[1], activation="sigmoid")]
    )
    probe.compile(keras.optimizers.Adam(1e-3), "binary_crossentropy")
    probe.fit(train_x, train_y, epochs=60, batch_size=64, verbose=0)
    return probe


def linear_probe(
    csv: Path, images: Path, *, train_limit: int = 1500, seed: int = 42, internal_size: int = 224
) -> dict[str, Any]:
    """Validation mAP of a linear head on pretrained vs random frozen features (and the prior)."""
    table = load_labels(csv)
    split = split_indices(table.labels, seed=seed)
    train = table.subset(split["train"][:train_limit])
    validation = table.subset(split["validation"])
    results: dict[str, Any] = {
        "internal_size": internal_size,
        "n_train": len(train.ids),
        "n_validation": len(validation.ids),
    }
    for name, pretrained in (("pretrained", True), ("random", False)):
        keras.utils.set_random_seed(seed)
        extractor = feature_extractor(pretrained, internal_size)
        features = {}
        for part_name, part in (("train", train), ("validation", validation)):
            batches = PosterBatches([image_path(images, i) for i in part.ids], None, batch_size=32)
            features[part_name] = extractor.predict(batches, verbose=0)
        mean = features["train"].mean(axis=0)
        std = features["train"].std(axis=0) + 1e-6
        probe = _fit_probe((features["train"] - mean) / std, train.labels.astype("float32"), seed)
        probs = probe.predict((features["validation"] - mean) / std, verbose=0)
        scored = metrics.score(
            validation.labels, probs, np.full(len(table.genres), 0.5), table.genres
        )
        results[name] = {"mAP": scored["mAP"], "macro_AUC": scored["macro_AUC"]}
    prior = metrics.prior_predictions(metrics.label_prior(train.labels), len(validation.ids))
    results["label_prior"] = {
        "mAP": metrics.score(
            validation.labels, prior, np.full(len(table.genres), 0.5), table.genres
        )["mAP"]
    }
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("--csv", type=Path, default=LABELS, help="label CSV")
    parser.add_argument("--images", type=Path, default=IMAGES, help="posters")
    parser.add_argument("--train-limit", type=int, default=1500, help="training posters used")
    parser.add_argument("--internal-size", type=int, default=224, help="backbone input size")
    parser.add_argument("--record", type=Path, default=None, help="add to this version's metadata")
    args = parser.parse_args(argv)
    result = linear_probe(
        args.csv, args.images, train_limit=args.train_limit, internal_size=args.internal_size
    )
    if args.record:
        record_probe(args.record, result)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
