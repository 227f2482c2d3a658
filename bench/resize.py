"""What the in-graph resize costs, and how far a cheaper one is from the antialiased one.

    .venv/bin/python -m bench.resize [--size 240]

Times, for a 400x400 batch, Keras' Resizing with antialias (v1's), plain bilinear and area, at batch
1 and 16 through compiled functions; times the Lite0 backbone alone at that size for scale; and on
real posters (synthetic without ../shared) reports the mean and largest absolute difference of the
cheaper resizes from the antialiased one, in [0, 1] pixel units. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np


def _timed(function: Callable[[Any], Any], batch: Any, repeats: int) -> float:
    """Milliseconds per call, after one untimed call that compiles."""
    function(batch)
    started = time.perf_counter()
    for _ in range(repeats):
        function(batch)
    return (time.perf_counter() - started) / repeats * 1000


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.resize", description=__doc__)
    parser.add_argument("--size", type=int, default=240)
    args = parser.parse_args(argv)
    import tensorflow as tf
    from keras import layers

    from bench.harness import load_posters
    from poster_genres.preprocessing import poster_to_input
    from training.efficientnet_lite import build_backbone

    size = args.size
    variants = {
        "antialiased bilinear (v1)": layers.Resizing(size, size, antialias=True),
        "bilinear": layers.Resizing(size, size, interpolation="bilinear"),
        "area": layers.Resizing(size, size, interpolation="area"),
    }
    posters, described = load_posters(limit=64)
    real = np.stack([poster_to_input(p) for p in posters[:64]])
    reference = np.asarray(variants["antialiased bilinear (v1)"](real))
    backbone = build_backbone(size)
    run_backbone = tf.function(lambda x: backbone(x, training=False), autograph=False)
    backbone_ms = {
        b: _timed(run_backbone, tf.constant(np.zeros((b, size, size, 3), np.float32)), 20 // b + 3)
        for b in (1, 16)
    }
    print(
        f"Resize 400 -> {size} ({described}); Lite0 backbone alone: "
        f"{backbone_ms[1]:.1f} ms at batch 1, {backbone_ms[16]:.1f} ms at batch 16.\n"
    )
    print("| resize | batch 1 ms | share of backbone | batch 16 ms | share | mean abs diff | max |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, layer in variants.items():
        run = tf.function(lambda x, layer=layer: layer(x), autograph=False)
        ms = {b: _timed(run, tf.constant(real[:b]), 50 // b + 5) for b in (1, 16)}
        diff = np.abs(np.asarray(layer(real)) - reference)
        print(
            f"| {name} | {ms[1]:.2f} | {ms[1] / backbone_ms[1]:.0%} | {ms[16]:.2f} | "
            f"{ms[16] / backbone_ms[16]:.0%} | {diff.mean():.4f} | {diff.max():.3f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
