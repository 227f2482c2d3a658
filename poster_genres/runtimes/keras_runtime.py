"""The reference runtime: the version's Keras model behind compiled functions of fixed shapes."""

from __future__ import annotations

from typing import Literal

import keras
import numpy as np
import tensorflow as tf

from poster_genres.artifact import ModelVersion, load_keras_model
from poster_genres.preprocessing import INPUT_SHAPE
from poster_genres.runtimes.threads import ThreadBudget

# The divisor is a variable, not a constant, on purpose: TensorFlow's graph optimiser turns a
# division by a constant into a multiplication by its reciprocal, which is not correctly rounded
# (TF 2.21 here: 126 of the 256 values differ from numpy's in the last bit). A true division is,
# and costs 1.6 ms per batch of 16 (a 256-entry lookup, also exact, cost 12 ms).
_DIVISOR = tf.Variable(255.0, dtype=tf.float32, trainable=False, name="pixel_divisor")


def scale_pixels(pixels: tf.Tensor) -> tf.Tensor:
    """`preprocessing.pixels_to_input` inside the graph: uint8 -> float32 value / 255,
    bit-identical for all 256 values (tested)."""
    return tf.cast(pixels, tf.float32) / _DIVISOR


_configured: int | None = None


def use_threads(count: int) -> None:
    """Size TensorFlow's thread pools to the budget, once per process. TensorFlow reads them when
    its runtime starts and refuses a change after that, so the command-line processes set them
    before importing it (`cli.import_tensorflow(threads=...)`); this covers a process that had
    not started it yet."""
    global _configured
    if _configured is not None:
        return
    try:
        tf.config.threading.set_intra_op_parallelism_threads(count)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:
        pass  # TensorFlow already started (a notebook, a test): its pools stay as they are
    _configured = count


class KerasRunner:
    """One compiled `tf.function` per batch size: padding to a prepared size never retraces."""

    runtime: Literal["keras"] = "keras"
    parallel = 1  # TensorFlow's pool is the whole budget: one call at a time

    def __init__(
        self,
        version: ModelVersion,
        sizes: tuple[int, ...],
        budget: ThreadBudget,
        *,
        model: keras.Model | None = None,
    ) -> None:
        use_threads(budget.size)
        self.model = model if model is not None else load_keras_model(version)
        self.sizes = sizes
        self._budget = budget
        model = self.model
        self._forward = {
            size: tf.function(
                lambda x: model(scale_pixels(x), training=False),
                input_signature=[tf.TensorSpec((size, *INPUT_SHAPE), tf.uint8)],
                autograph=False,
            )
            for size in sizes
        }

    def warm_up(self) -> None:
        """Trace and run every prepared size once, so the first request pays no tracing cost."""
        tf_logger = tf.get_logger()
        level = tf_logger.level
        # One trace per size is the design; TensorFlow's "frequent retracing" hint is not news.
        tf_logger.setLevel("ERROR")
        try:
            for size in self.sizes:
                self.run(np.zeros((size, *INPUT_SHAPE), dtype=np.uint8))
        finally:
            tf_logger.setLevel(level)

    def run(self, pixels: np.ndarray) -> np.ndarray:
        forward = self._forward[len(pixels)]
        # TensorFlow's pool is the whole budget: a call holds all of it.
        result = self._budget.run(self._budget.size, lambda: forward(tf.constant(pixels)))
        return np.asarray(result, dtype=np.float32)
