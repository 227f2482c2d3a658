"""Where the evidence for a genre lies: Grad-CAM on the model's last spatial feature map.

Grad-CAM (Selvaraju et al., 2017) weighs each channel of the last feature map by the mean gradient
of the genre's logit over the map, sums the channels and keeps the positive part. For the shipped
heads (global average pooling, then one Dense layer) this is exactly CAM (Zhou et al., 2016): the
genre's logit is the bias plus the *mean of the grid cells' scores*, so each cell's value is its
own additive share of the evidence, not an approximation. Other heads (the seed's Flatten) get the
ordinary gradient-weighted map.

The logit is computed from the last Dense layer's input and weights, so saturated probabilities
(0 or 1 in float32) still have gradients. Maps are scaled so the strongest cell is 1; a genre with
no positive evidence anywhere gets all zeros.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from poster_genres.artifact import LoadedModel
from poster_genres.maps import GenreMap, MapMethod, check_request, peak_scaled
from poster_genres.preprocessing import INPUT_SHAPE
from poster_genres.runtimes.keras_runtime import scale_pixels


def feature_map(model: keras.Model) -> keras.KerasTensor:
    """The backbone's final feature map: the input of the first layer that collapses space
    (pooling or Flatten). Taken as that layer's input, because a nested backbone's own `.output`
    belongs to its inner graph, not to the model's."""
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        if len(layer.input.shape) == 4 and len(layer.output.shape) == 2:
            return layer.input
    raise ValueError(f"{model.name} has no spatial feature map to explain")


def logit_head(model: keras.Model) -> keras.layers.Dense:
    head = model.layers[-1]
    if not isinstance(head, keras.layers.Dense) or head.activation is not keras.activations.sigmoid:
        raise ValueError(f"{model.name} does not end in a sigmoid Dense layer")
    return head


class GenreExplainer:
    """Grad-CAM maps from a loaded model, through one compiled function of batch 1."""

    method: MapMethod = "grad-cam"

    def __init__(self, loaded: LoadedModel) -> None:
        model = loaded.model
        self.genres = loaded.genres
        features = feature_map(model)
        self._head = logit_head(model)
        # Feature map and the head's input in one pass, so the logit can be formed by hand.
        self._model = keras.Model(model.inputs, [features, self._head.input])
        rows, cols = features.shape[1:3]
        self.grid_shape = (int(rows), int(cols))
        self._maps = tf.function(
            self._grad_cam,
            input_signature=[
                tf.TensorSpec((1, *INPUT_SHAPE), tf.uint8),
                tf.TensorSpec((), tf.int32),
            ],
            autograph=False,
        )

    def _grad_cam(
        self, pixels: tf.Tensor, genre: tf.Tensor
    ) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        with tf.GradientTape() as tape:
            feature_map, pooled = self._model(scale_pixels(pixels), training=False)
            tape.watch(feature_map)
            logits = tf.matmul(pooled, self._head.kernel) + self._head.bias
            probabilities = tf.sigmoid(logits)[0]
            # -1: the most probable genre (argmax of the probabilities, as top_k orders them).
            genre = tf.where(genre < 0, tf.argmax(probabilities, output_type=tf.int32), genre)
            logit = logits[0, genre]
        gradients = tape.gradient(logit, feature_map)
        channel_weights = tf.reduce_mean(gradients, axis=(1, 2), keepdims=True)
        cam = tf.nn.relu(tf.reduce_sum(feature_map * channel_weights, axis=-1))[0]
        return cam, probabilities, genre

    def warm_up(self) -> None:
        """Trace and run the compiled function once, so the first request pays no tracing cost."""
        self._maps(tf.zeros((1, *INPUT_SHAPE), tf.uint8), tf.constant(0))

    def explain(self, pixels: np.ndarray, genre_index: int | None = None) -> GenreMap:
        """The map of genre `genre_index` (default: the most probable) for one poster's uint8
        pixels (400, 400, 3)."""
        check_request(pixels, genre_index, len(self.genres))
        wanted = -1 if genre_index is None else genre_index
        cam, probabilities, chosen = self._maps(tf.constant(pixels[None]), tf.constant(wanted))
        grid = peak_scaled(np.asarray(cam, dtype=np.float32))
        probs = np.asarray(probabilities, dtype=np.float32)
        index = int(chosen)
        return GenreMap(index, float(probs[index]), probs, grid)
