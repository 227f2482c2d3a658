"""GenreClassifier: the model behind a compiled function with fixed batch shapes, and the decision rule.

No FastAPI here: the offline scorer, the evaluation CLI and the HTTP service all use this class.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from app.imaging import INPUT_SHAPE
from app.model_store import LoadedModel

# "N/A" is the dataset's "no genre recorded" marker: the model keeps the output, users never see it
# as a predicted genre.
NEVER_PREDICTED = frozenset({"N/A"})
MAX_PREDICTED = 3


@dataclass(frozen=True)
class Decision:
    """What the service says about one poster."""

    top_k: list[tuple[str, float]]
    predicted: list[tuple[str, float]]


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
        self.thresholds = loaded.thresholds.astype(np.float64)
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
        self._eligible = np.array([g not in NEVER_PREDICTED for g in self.genres])

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
        """Top-k genres, and the predicted ones.

        Predicted: genres at or above their tuned threshold, most probable first, at most three,
        never N/A; when none passes, the single most probable eligible genre.
        """
        if not 1 <= top_k <= len(self.genres):
            raise ValueError(f"top_k must be between 1 and {len(self.genres)}")
        probs = np.asarray(probabilities, dtype=np.float64)
        order = np.argsort(-probs, kind="stable")
        ranked = [(self.genres[i], float(probs[i])) for i in order]
        eligible = [i for i in order if self._eligible[i]]
        passing = [i for i in eligible if probs[i] >= self.thresholds[i]][:MAX_PREDICTED]
        chosen = passing or eligible[:1]
        return Decision(
            top_k=ranked[:top_k],
            predicted=[(self.genres[i], float(probs[i])) for i in chosen],
        )
