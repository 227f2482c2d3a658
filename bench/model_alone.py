"""`python -m bench.model_alone MODEL_DIR --runtime R --sizes 1 16 --seconds 5`: the model alone.

Uint8 pixels already in memory (the service's path), through the classifier under the runtime, at
each batch size; with `--parallel K`, K threads call at once (LiteRT: K interpreters per size,
each with the budget's share of threads). Prints one JSON object: per size, [images/s, ms per call,
cores busy]. A process of its own, so each runtime starts clean.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from pathlib import Path

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.model_alone")
    parser.add_argument("model_dir", type=Path)
    parser.add_argument("--runtime", choices=["keras", "litert"], required=True)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--parallel", type=int, default=1, help="callers at once")
    args = parser.parse_args()

    from poster_genres.artifact import open_version
    from poster_genres.classifier import bucket_sizes
    from poster_genres.runtimes.threads import process_budget

    version = open_version(args.model_dir)
    budget = process_budget()
    sizes = tuple(sorted(set(args.sizes) & set(bucket_sizes(max(args.sizes)))))
    if args.runtime == "keras":
        from poster_genres.cli import import_tensorflow

        import_tensorflow()
        from poster_genres.runtimes.keras_runtime import KerasRunner

        runner: object = KerasRunner(version, sizes, budget)
    else:
        from poster_genres.runtimes.litert_runtime import LiteRTRunner

        runner = LiteRTRunner(
            version,
            sizes,
            budget,
            interpreters=args.parallel,
            threads=max(1, budget.size // args.parallel),
        )
    run = runner.run  # type: ignore[attr-defined]  # either runner: both have run()
    rates = {}
    for size in sizes:
        pixels = np.random.default_rng(0).integers(0, 256, (size, 400, 400, 3), dtype=np.uint8)
        for _ in range(3):
            run(pixels)
        calls = [0] * args.parallel
        stop = time.perf_counter() + args.seconds

        def loop(
            slot: int, pixels: np.ndarray = pixels, stop: float = stop, calls: list[int] = calls
        ) -> None:
            while time.perf_counter() < stop:
                run(pixels)
                calls[slot] += 1

        started, cpu = time.perf_counter(), time.process_time()
        workers = [threading.Thread(target=loop, args=(i,)) for i in range(args.parallel)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        elapsed = time.perf_counter() - started
        total = sum(calls)
        rates[size] = [
            total * size / elapsed,
            elapsed / total * 1000 * args.parallel,
            (time.process_time() - cpu) / elapsed,
        ]
    print(json.dumps(rates))


if __name__ == "__main__":
    main()
