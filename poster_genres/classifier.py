"""GenreClassifier: the model behind compiled functions with fixed batch shapes, plus its version's
decision rule. The offline scorer, the evaluation CLI and the HTTP service all use this class."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from poster_genres.artifact import LoadedModel
from poster_genres.decision import Decision
from poster_genres.preprocessing import INPUT_SHAPE


def bucket_sizes(max_batch: int) -> tuple[int, ...]:
    """The only batch shapes ever compiled: powers of two and their 1.5x (1, 2, 3, 4, 6, 8, 12,
    16, ...) up to `max_batch`, and `max_batch` itself. The batcher runs exactly these sizes, so a
    CPU-bound model never computes padding."""
    if max_batch < 1:
        raise ValueError("max_batch must be at least 1")
    sizes = {max_batch}
    for i in range(max_batch.bit_length()):
        sizes |= {s for s in (1 << i, 3 << i >> 1) if 1 <= s <= max_batch}
    return tuple(sorted(sizes))


# The divisor is a variable, not a constant, on purpose: TensorFlow's graph optimiser turns a
# division by a constant into a multiplication by its reciprocal, which is not correctly rounded
# (TF 2.21 here: 126 of the 256 values differ from numpy's in the last bit). A true division is,
# and costs 1.6 ms per batch of 16 (a 256-entry lookup, also exact, cost 12 ms).
_DIVISOR = tf.Variable(255.0, dtype=tf.float32, trainable=False, name="pixel_divisor")


def scale_pixels(pixels: tf.Tensor) -> tf.Tensor:
    """`preprocessing.pixels_to_input` inside the graph: uint8 -> float32 value / 255,
    bit-identical for all 256 values (tested)."""
    return tf.cast(pixels, tf.float32) / _DIVISOR


class GenreClassifier:
    """Turns batches of model inputs into genre probabilities and decisions.

    The service sends uint8 pixels (`preprocessing.to_model_pixels`): a queued image then holds
    480 KB instead of 1.9 MB, and the scaling to [0, 1] runs inside the compiled call. Float32
    inputs (`preprocessing.poster_to_input`, as training and evaluation use) are accepted too.
    """

    def __init__(self, loaded: LoadedModel, *, max_batch: int = 16) -> None:
        self.loaded = loaded
        self.genres = loaded.genres
        self.rule = loaded.decision_rule()
        self.buckets = bucket_sizes(max_batch)
        self.max_batch = self.buckets[-1]
        # One compiled function per bucket shape and input type: padding to a bucket means nothing
        # retraces. tf.function traces on first use, so the float32 ones cost nothing unless used.
        self._forward = {
            (size, dtype): self._compile(size, dtype)
            for size in self.buckets
            for dtype in (np.uint8, np.float32)
        }

    def _compile(self, size: int, dtype: type[np.generic]) -> tf.types.experimental.GenericFunction:
        model = self.loaded.model
        if dtype is np.uint8:
            forward = lambda x: model(scale_pixels(x), training=False)  # noqa: E731
        else:
            forward = lambda x: model(x, training=False)  # noqa: E731
        return tf.function(
            forward,
            input_signature=[tf.TensorSpec((size, *INPUT_SHAPE), tf.as_dtype(dtype))],
            autograph=False,
        )

    @property
    def name(self) -> str:
        return self.loaded.name

    @property
    def version(self) -> str:
        return self.loaded.version

    def warm_up(self) -> None:
        """Compile and run every uint8 bucket once (the service's path), so the first real request
        pays no tracing cost."""
        tf_logger = tf.get_logger()
        level = tf_logger.level
        # One trace per bucket is the design; TensorFlow's "frequent retracing" hint is not news.
        tf_logger.setLevel("ERROR")
        try:
            for size in self.buckets:
                self._run_bucket(np.zeros((size, *INPUT_SHAPE), dtype=np.uint8))
        finally:
            tf_logger.setLevel(level)

    def _run_bucket(self, batch: np.ndarray) -> np.ndarray:
        forward = self._forward[len(batch), batch.dtype.type]
        return np.asarray(forward(tf.constant(batch)), dtype=np.float32)

    def predict(self, inputs: np.ndarray) -> np.ndarray:
        """Probabilities (n, N) for model inputs (n, 400, 400, 3), uint8 pixels or float32 in
        [0, 1]; any n, run in bounded chunks."""
        if inputs.ndim != 4 or inputs.shape[1:] != INPUT_SHAPE:
            raise ValueError(f"expected inputs of shape (n, {INPUT_SHAPE}), got {inputs.shape}")
        if inputs.dtype not in (np.uint8, np.float32):
            raise ValueError(f"expected uint8 or float32 inputs, got {inputs.dtype}")
        outputs = []
        for start in range(0, len(inputs), self.max_batch):
            chunk = inputs[start : start + self.max_batch]
            size = next(b for b in self.buckets if b >= len(chunk))
            if size > len(chunk):
                padding = np.zeros((size - len(chunk), *INPUT_SHAPE), dtype=inputs.dtype)
                chunk = np.concatenate([chunk, padding])
            outputs.append(self._run_bucket(chunk)[: min(self.max_batch, len(inputs) - start)])
        if not outputs:
            return np.zeros((0, len(self.genres)), dtype=np.float32)
        return np.concatenate(outputs)

    def decide(self, probabilities: np.ndarray, top_k: int) -> Decision:
        """Top-k genres and the predicted ones, by this version's rule (poster_genres.decision)."""
        return self.rule.decide(probabilities, top_k)
