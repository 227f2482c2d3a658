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


class GenreClassifier:
    """Turns batches of model inputs into genre probabilities and decisions."""

    def __init__(self, loaded: LoadedModel, *, max_batch: int = 16) -> None:
        self.loaded = loaded
        self.genres = loaded.genres
        self.rule = loaded.decision_rule()
        self.buckets = bucket_sizes(max_batch)
        self.max_batch = self.buckets[-1]
        model = loaded.model
        # One compiled function per bucket shape: padding to a bucket means nothing retraces.
        self._forward = {
            size: tf.function(
                lambda x: model(x, training=False),
                input_signature=[tf.TensorSpec((size, *INPUT_SHAPE), tf.float32)],
                autograph=False,
            )
            for size in self.buckets
        }

    @property
    def name(self) -> str:
        return self.loaded.name

    @property
    def version(self) -> str:
        return self.loaded.version

    def warm_up(self) -> None:
        """Compile and run every bucket once, so the first real request pays no tracing cost."""
        tf_logger = tf.get_logger()
        level = tf_logger.level
        # One trace per bucket is the design; TensorFlow's "frequent retracing" hint is not news.
        tf_logger.setLevel("ERROR")
        try:
            for size in self.buckets:
                self._run_bucket(np.zeros((size, *INPUT_SHAPE), dtype=np.float32))
        finally:
            tf_logger.setLevel(level)

    def _run_bucket(self, batch: np.ndarray) -> np.ndarray:
        return np.asarray(self._forward[len(batch)](tf.constant(batch)), dtype=np.float32)

    def predict(self, inputs: np.ndarray) -> np.ndarray:
        """Probabilities (n, N) for model inputs (n, 400, 400, 3); any n, run in bounded chunks."""
        if inputs.ndim != 4 or inputs.shape[1:] != INPUT_SHAPE:
            raise ValueError(f"expected inputs of shape (n, {INPUT_SHAPE}), got {inputs.shape}")
        outputs = []
        for start in range(0, len(inputs), self.max_batch):
            chunk = inputs[start : start + self.max_batch]
            size = next(b for b in self.buckets if b >= len(chunk))
            if size > len(chunk):
                padding = np.zeros((size - len(chunk), *INPUT_SHAPE), dtype=np.float32)
                chunk = np.concatenate([chunk, padding])
            outputs.append(self._run_bucket(chunk)[: min(self.max_batch, len(inputs) - start)])
        if not outputs:
            return np.zeros((0, len(self.genres)), dtype=np.float32)
        return np.concatenate(outputs)

    def decide(self, probabilities: np.ndarray, top_k: int) -> Decision:
        """Top-k genres and the predicted ones, by this version's rule (poster_genres.decision)."""
        return self.rule.decide(probabilities, top_k)
