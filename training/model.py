"""Model architectures. Every model takes the shared 400x400x3 [0, 1] input and ends in N sigmoids.

Only built-in Keras layers are used, so the service can load any of them in safe mode without
importing this package.
"""

from __future__ import annotations

from collections.abc import Callable

import keras
from keras import layers

from app.imaging import INPUT_SHAPE


def build_seed(n_genres: int) -> keras.Model:
    """The tutorial's CNN, layer for layer: the baseline every other model is compared with."""
    inputs = keras.Input(shape=INPUT_SHAPE, name="poster")
    x = inputs
    for filters in (16, 32, 64, 64):
        x = layers.Conv2D(filters, (5, 5), activation="relu")(x)
        x = layers.MaxPooling2D(pool_size=(2, 2))(x)
        x = layers.Dropout(0.25)(x)
    x = layers.Flatten()(x)
    x = layers.Dense(128, activation="relu")(x)
    x = layers.Dropout(0.5)(x)
    x = layers.Dense(64, activation="relu")(x)
    x = layers.Dropout(0.5)(x)
    outputs = layers.Dense(n_genres, activation="sigmoid", name="genres")(x)
    return keras.Model(inputs, outputs, name="seed")


def _conv_block(x: keras.KerasTensor, filters: int) -> keras.KerasTensor:
    x = layers.Conv2D(filters, 3, padding="same", use_bias=False)(x)
    x = layers.BatchNormalization()(x)
    x = layers.Activation("relu")(x)
    x = layers.SeparableConv2D(filters, 3, padding="same", use_bias=False)(x)
    x = layers.BatchNormalization()(x)
    x = layers.Activation("relu")(x)
    return layers.MaxPooling2D(2)(x)


def build_compact(n_genres: int, internal_size: int = 128) -> keras.Model:
    """A small batch-normalised CNN that works at a reduced internal resolution.

    Downscaling inside the graph keeps the service's 400x400 contract while cutting compute ~10x;
    global pooling instead of Flatten keeps the head small and less prone to memorising posters.
    """
    inputs = keras.Input(shape=INPUT_SHAPE, name="poster")
    x = layers.Resizing(internal_size, internal_size, interpolation="bilinear", antialias=True)(
        inputs
    )
    x = layers.RandomFlip("horizontal")(x)
    x = layers.RandomTranslation(0.05, 0.05, fill_mode="nearest")(x)
    x = layers.Rescaling(2.0, offset=-1.0)(x)
    for filters in (24, 48, 96, 160):
        x = _conv_block(x, filters)
    x = layers.Conv2D(224, 3, padding="same", use_bias=False)(x)
    x = layers.BatchNormalization()(x)
    x = layers.Activation("relu")(x)
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dropout(0.4)(x)
    outputs = layers.Dense(n_genres, activation="sigmoid", name="genres")(x)
    return keras.Model(inputs, outputs, name="compact")


def build_lite0(n_genres: int) -> keras.Model:
    """ImageNet-pretrained EfficientNet-Lite0 (frozen at first) with a sigmoid head."""
    from training.efficientnet_lite import build_lite0_classifier

    return build_lite0_classifier(n_genres)


ARCHITECTURES: dict[str, Callable[[int], keras.Model]] = {
    "seed": build_seed,
    "compact": build_compact,
    "lite0": build_lite0,
}
# Architectures with a pretrained backbone to open up for a second, fine-tuning phase.
FINE_TUNABLE = {"lite0"}
DEFAULT_ARCH = "lite0"


def build_model(arch: str, n_genres: int) -> keras.Model:
    """Build an architecture by name for `n_genres` sigmoid outputs."""
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {arch!r}; choose one of {sorted(ARCHITECTURES)}")
    if n_genres < 1:
        raise ValueError("n_genres must be at least 1")
    return ARCHITECTURES[arch](n_genres)
