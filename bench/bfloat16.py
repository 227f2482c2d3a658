"""Does bfloat16 inference speed up the shipped model without changing its answers?

    .venv/bin/python -m bench.bfloat16      # appends its figures to bench/RESULTS.md

Rebuilds the shipped model under Keras' `mixed_bfloat16` policy with the same weights, then compares
on the shared posters (synthetic ones when absent): ordered top-3 agreement, largest probability
difference, and images/s at batch 1 and 16 through the same compiled, fixed-shape call the service uses.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from bench.harness import ROOT, load_posters, machine
from poster_genres.artifact import load_version, resolve_version_dir
from poster_genres.preprocessing import INPUT_SHAPE, poster_to_input


def with_policy(config: object, policy: str) -> object:
    """A copy of a model config with every layer's dtype policy set to `policy`."""
    if isinstance(config, dict):
        if config.get("class_name") == "DTypePolicy":
            return {**config, "config": {**config["config"], "name": policy}}
        return {key: with_policy(value, policy) for key, value in config.items()}
    if isinstance(config, list):
        return [with_policy(item, policy) for item in config]
    return config


def compiled(model: keras.Model, batch: int) -> Any:
    """The model's call on a fixed (batch, *INPUT_SHAPE) float32 shape, as a TensorFlow function."""
    return tf.function(
        lambda x: model(x, training=False),
        input_signature=[tf.TensorSpec((batch, *INPUT_SHAPE), tf.float32)],
        autograph=False,
    )


def throughput(model: keras.Model, batch: int, seconds: float = 8.0) -> float:
    call = compiled(model, batch)
    x = tf.constant(np.random.default_rng(0).random((batch, *INPUT_SHAPE), dtype=np.float32))
    call(x)
    started, calls = time.perf_counter(), 0
    while time.perf_counter() - started < seconds:
        call(x).numpy()
        calls += 1
    return batch * calls / (time.perf_counter() - started)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bfloat16", description=__doc__)
    parser.parse_args(argv)  # no options: --help says what the run does before it starts
    shipped = resolve_version_dir(ROOT / "model_store", "poster-genres", None)
    float32 = load_version(shipped).model
    # Saved configs pin each layer's dtype policy, so a global policy alone would change nothing.
    bfloat16 = keras.Model.from_config(with_policy(float32.get_config(), "mixed_bfloat16"))
    bfloat16.set_weights(float32.get_weights())
    assert bfloat16.layers[-1].compute_dtype == "bfloat16"

    posters, described = load_posters(limit=400)
    inputs = np.stack([poster_to_input(p) for p in posters])
    p32 = np.concatenate(
        [compiled(float32, 16)(inputs[i : i + 16]).numpy() for i in range(0, len(inputs) - 15, 16)]
    )
    p16 = np.concatenate(
        [
            compiled(bfloat16, 16)(inputs[i : i + 16]).numpy().astype(np.float32)
            for i in range(0, len(inputs) - 15, 16)
        ]
    )
    top32 = np.argsort(-p32, axis=1)[:, :3]
    top16 = np.argsort(-p16, axis=1)[:, :3]
    agreement = float((top32 == top16).all(axis=1).mean())
    max_diff = float(np.abs(p32 - p16).max())
    speeds = {
        (name, batch): throughput(model, batch)
        for name, model in (("float32", float32), ("bfloat16", bfloat16))
        for batch in (1, 16)
    }
    verdict = "keeps" if agreement >= 0.99 and max_diff < 0.02 else "changes"
    text = (
        f"\n## bfloat16\n\n`python -m bench.bfloat16` on {machine()}, {len(p32)} posters ({described}): "
        f"ordered top-3 identical on {agreement:.1%}, largest probability difference {max_diff:.4f} "
        f"(bfloat16 {verdict} the answers by the issue's bar: 99% and 0.02). Images/s, float32 vs "
        f"bfloat16: batch 1 {speeds[('float32', 1)]:.1f} vs {speeds[('bfloat16', 1)]:.1f}, batch 16 "
        f"{speeds[('float32', 16)]:.1f} vs {speeds[('bfloat16', 16)]:.1f}.\n"
    )
    print(text)
    with (ROOT / "bench" / "RESULTS.md").open("a") as handle:
        handle.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
