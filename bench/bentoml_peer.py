"""The peer: BentoML 1.4 with adaptive batching, serving the same model with the same preprocessing.

    .venv/bin/pip install "bentoml>=1.4,<1.5"     # optional; adds packages, changes none of ours
    .venv/bin/python -m bench.bentoml_peer [--duration 15]

Written the way BentoML's docs write an image classifier: one `@bentoml.service` (one worker, as our
service is one process), a batchable API (`max_batch_size=16`, the service's own) that decodes each
upload with `poster_genres.preprocessing` and calls the same compiled classifier. Then our service and
the peer are driven in turn by bench.run's closed-loop clients with the same posters, and the compiled
model alone is timed, in one run. Appends the figures to bench/RESULTS.md. Skips, saying so, when
BentoML is not installed.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import os
import sys
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from bench.harness import (
    ROOT,
    TF_THREADS,
    Row,
    Service,
    drive,
    load_posters,
    machine,
    measure,
    model_alone,
    running,
)
from devkit.ports import free_port

try:
    import bentoml
except ImportError:  # the benchmark below says so; the module stays importable
    bentoml = None

if bentoml is not None:

    @bentoml.service(workers=1, traffic={"timeout": 60})
    class PosterGenres:
        """The same model file, preprocessing and compiled classifier as our service."""

        def __init__(self) -> None:
            from poster_genres.classifier import GenreClassifier

            model_dir = Path(os.environ["PEER_MODEL_DIR"])
            self.classifier = GenreClassifier.open(model_dir, max_batch=16)
            self.classifier.warm_up()

        @bentoml.api(batchable=True, max_batch_size=16, max_latency_ms=10_000)
        def predict(self, file: list[Path]) -> list[dict[str, Any]]:
            import numpy as np

            from poster_genres.preprocessing import decode_poster, to_model_pixels

            pixels = np.stack([to_model_pixels(decode_poster(p.read_bytes()).image) for p in file])
            probabilities = self.classifier.predict(pixels)
            return [
                {
                    "probabilities": dict(
                        zip(self.classifier.genres, map(float, row), strict=True)
                    ),
                    "top_k": [g for g, _ in self.classifier.decide(row, 3).top_k],
                }
                for row in probabilities
            ]


def peer(model_dir: Path) -> AbstractContextManager[Service]:
    """The peer serving `model_dir` on a free loopback port, with the servers' thread settings."""
    port = free_port()
    argv = [sys.executable, "-m", "bentoml", "serve", "bench.bentoml_peer:PosterGenres"]
    argv += ["--port", str(port), "--host", "127.0.0.1"]
    env = {**TF_THREADS, "PEER_MODEL_DIR": str(model_dir)}
    return running(argv, port, env, ready_path="/readyz", quiet=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bentoml_peer", description=__doc__)
    parser.add_argument("--duration", type=float, default=15.0)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16, 64])
    parser.add_argument("--out", type=Path, default=None, help="default: append to RESULTS.md")
    args = parser.parse_args(argv)
    if importlib.util.find_spec("bentoml") is None:
        print('BentoML is not installed: pip install "bentoml>=1.4,<1.5" to run the peer')
        return 0
    from poster_genres.artifact import resolve_version_dir

    shipped = resolve_version_dir(ROOT / "model_store", "poster-genres", None)
    posters, described = load_posters()
    ours = measure("shipped", "ours", shipped, posters, args.concurrency, args.duration)
    theirs = []
    with peer(shipped) as service:
        url = f"{service.url}/predict"
        for concurrency in args.concurrency:
            asyncio.run(drive(url, posters, concurrency, 3.0, Row("w", "w", concurrency, 3.0)))
            row = Row("shipped", "BentoML 1.4", concurrency, args.duration)
            asyncio.run(drive(url, posters, concurrency, args.duration, row))
            print(row.line(), flush=True)
            theirs.append(row)
    alone = model_alone(shipped, (1, 16))
    lines = [
        "",
        "## BentoML, same model and preprocessing",
        "",
        f"`python -m bench.bentoml_peer` (BentoML {bentoml.__version__ if bentoml else '?'}: one "
        f"worker, batchable API, max batch 16) on {machine()}; {described}; {args.duration:.0f} s "
        "per row after a warm-up, closed-loop clients on 127.0.0.1, one run.",
        "",
        "| server | conc. | ok req/s | p50 ms | p99 ms | errors | share of the model alone at batch 16 |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in [*theirs, *ours]:
        name = "ours" if row in ours else row.server
        lines.append(
            f"| {name} | {row.concurrency} | {row.rps:.1f} | {row.pct(50):.0f} | "
            f"{row.pct(99):.0f} | {row.errors} | {row.rps / alone[16].images_per_s:.0%} |"
        )
    lines += [
        "",
        f"The compiled model alone in the same run: batch 1 {alone[1].images_per_s:.1f} img/s "
        f"({alone[1].ms_per_call:.1f} ms), batch 16 {alone[16].images_per_s:.1f} img/s.",
    ]
    out = args.out or ROOT / "bench" / "RESULTS.md"
    text = "\n".join(lines) + "\n"
    if args.out is None:
        existing = out.read_text()
        marker = "\n## BentoML, same model and preprocessing"
        existing = existing[: existing.index(marker)] if marker in existing else existing
        out.write_text(existing.rstrip("\n") + "\n" + text)
    else:
        out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
