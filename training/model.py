"""Model architectures. Every model takes the shared 400x400x3 [0, 1] input and ends in N sigmoids.

Only built-in Keras layers are used, so the service can load any of them in safe mode without
importing this package.
"""

from __future__ import annotations

from collections.abc import Callable

import keras
from keras import layers

from poster_genres.preprocessing import INPUT_SHAPE


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


def build_lite0(n_genres: int, internal_size: int = 224, translate: float = 0.0) -> keras.Model:
    """ImageNet-pretrained EfficientNet-Lite0 (frozen at first) with a sigmoid head.

    A plain bilinear resize inside the graph: at 400 -> 240 it costs a quarter of the antialiased
    one (bench/resize.py) and the model learns on exactly what it serves.
    """
    from training.efficientnet_lite import build_lite0_classifier

    return build_lite0_classifier(
        n_genres, internal_size=internal_size, antialias=False, translate=translate
    )


def build_model(
    arch: str, n_genres: int, *, internal_size: int = 224, translate: float = 0.0
) -> keras.Model:
    """Build an architecture by name for `n_genres` sigmoid outputs (the size and shift options
    apply to pretrained architectures only)."""
    builders: dict[str, Callable[[], keras.Model]] = {
        "seed": lambda: build_seed(n_genres),
        "compact": lambda: build_compact(n_genres),
        "lite0": lambda: build_lite0(n_genres, internal_size, translate),
    }
    if arch not in builders:
        raise ValueError(f"unknown architecture {arch!r}; choose one of {sorted(builders)}")
    if n_genres < 1:
        raise ValueError("n_genres must be at least 1")
    return builders[arch]()
