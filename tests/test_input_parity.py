"""Training and serving feed the model identical tensors: the service queues 8-bit pixels and
scales them inside the compiled call; training and evaluation scale in numpy."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from poster_genres.classifier import GenreClassifier
from poster_genres.preprocessing import (
    decode_poster,
    pixels_to_input,
    poster_to_input,
    to_model_pixels,
)
from poster_genres.runtimes.keras_runtime import scale_pixels
from training.dataset import PosterBatches


def test_the_in_graph_scaling_is_bit_identical_for_every_8_bit_value() -> None:
    values = np.arange(256, dtype=np.uint8).reshape(1, 16, 16, 1)
    compiled = tf.function(scale_pixels, autograph=False, jit_compile=False)
    in_graph = compiled(tf.constant(values)).numpy()
    in_numpy = pixels_to_input(values)
    assert in_graph.dtype == in_numpy.dtype == np.float32
    assert in_graph.view(np.uint32).tolist() == in_numpy.view(np.uint32).tolist()
    assert in_numpy[0, 0, 0, 0] == 0.0 and in_numpy[0, -1, -1, 0] == 1.0


def test_pixels_then_scaling_is_exactly_the_training_input(tiny_dataset) -> None:
    paths = sorted(tiny_dataset.images.glob("*.jpg"))[:4]
    training_batch, _ = PosterBatches(paths, np.zeros((4, 4)), batch_size=4)[0]
    pixels = np.stack([to_model_pixels(decode_poster(p.read_bytes()).image) for p in paths])
    assert pixels.dtype == np.uint8 and pixels.shape == (4, 400, 400, 3)
    np.testing.assert_array_equal(pixels_to_input(pixels), training_batch)


def test_the_model_answers_the_same_to_pixels_and_to_training_inputs(
    tiny_version: Path, tiny_dataset
) -> None:
    classifier = GenreClassifier.open(tiny_version, max_batch=4)
    paths = sorted(tiny_dataset.images.glob("*.jpg"))[:3]
    pixels = np.stack([to_model_pixels(decode_poster(p.read_bytes()).image) for p in paths])
    floats = np.stack([poster_to_input(p.read_bytes()) for p in paths])
    from_pixels = classifier.predict(pixels)
    from_floats = classifier.predict(floats)
    assert from_pixels.shape == (3, len(classifier.genres))
    assert from_pixels.view(np.uint32).tolist() == from_floats.view(np.uint32).tolist()


def test_other_input_types_are_refused(tiny_version: Path) -> None:
    classifier = GenreClassifier.open(tiny_version, max_batch=4)
    with pytest.raises(ValueError, match="uint8 or float32"):
        classifier.predict(np.zeros((1, 400, 400, 3), dtype=np.float64))


def test_a_constant_divisor_would_not_be_exact() -> None:
    """Why scale_pixels divides by a variable: the optimiser's reciprocal multiplication differs
    from numpy's division in the last bit. If a TensorFlow release stops doing that, this test
    says the variable is no longer needed."""
    values = np.arange(256, dtype=np.uint8)
    constant = tf.function(lambda x: tf.cast(x, tf.float32) / 255.0, autograph=False)
    differing = int((constant(tf.constant(values)).numpy() != pixels_to_input(values)).sum())
    assert differing > 0


def test_the_shipped_model_answers_real_posters_identically_from_pixels(real_data: Path) -> None:
    from app.config import PROJECT_ROOT
    from poster_genres.artifact import resolve_version_dir

    version = resolve_version_dir(PROJECT_ROOT / "model_store", "poster-genres", None)
    classifier = GenreClassifier.open(version, max_batch=16)
    paths = sorted((real_data / "Images").glob("*.jpg"))[:16]
    pixels = np.stack([to_model_pixels(decode_poster(p.read_bytes()).image) for p in paths])
    floats = np.stack([poster_to_input(p.read_bytes()) for p in paths])
    for size in (1, 16):  # the batch shapes the service runs most
        from_pixels = classifier.predict(pixels[:size])
        from_floats = classifier.predict(floats[:size])
        assert from_pixels.view(np.uint32).tolist() == from_floats.view(np.uint32).tolist()
