"""The optimiser of the fine-tuning recipe: AdamW on a one-cycle schedule, with a smaller learning
rate for the pretrained backbone than for the new head (Keras has no per-layer learning rates)."""

from __future__ import annotations

from typing import Any

import keras

# One-cycle: warm up from peak / WARMUP_DIVISOR over the first part of training, then cosine to ~0.
WARMUP_DIVISOR = 25.0


def one_cycle(peak: float, total_steps: int, warmup_fraction: float) -> Any:
    """Linear warm-up to `peak`, then cosine decay to zero at `total_steps`."""
    warmup = max(1, int(total_steps * warmup_fraction))
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=peak / WARMUP_DIVISOR,
        decay_steps=max(1, total_steps - warmup),
        alpha=0.0,
        warmup_target=peak,
        warmup_steps=warmup,
    )


class DiscriminativeAdamW(keras.optimizers.AdamW):
    """AdamW whose steps for the variables in `slow_variables` are scaled by `slow_scale`."""

    def __init__(self, slow_variables: list[Any], slow_scale: float, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        # The TensorFlow backend hands update_step the backing tf.Variable, other backends the
        # Keras variable: recognise both.
        self._slow = {id(v) for v in slow_variables} | {
            id(getattr(v, "value", v)) for v in slow_variables
        }
        self._slow_scale = slow_scale

    def update_step(self, gradient: Any, variable: Any, learning_rate: Any) -> None:
        if id(variable) in self._slow:
            learning_rate = learning_rate * self._slow_scale
        super().update_step(gradient, variable, learning_rate)
