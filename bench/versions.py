"""Serving throughput of two model versions in one run: the same service, clients and posters.

    .venv/bin/python -m bench.versions OLD_VERSION NEW_VERSION [--duration 20] [--rounds 2]

Each round serves OLD then NEW with the service's defaults and drives it with closed-loop clients at
each concurrency (bench.run's clients and posters); rounds alternate so slow drift of the machine
hits both. Also times each model alone (a compiled call at batch 1 and 16). Writes
bench/VERSIONS.md and prints one line per row. Run it while nothing else runs.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from bench.harness import ROOT, Row, load_posters, machine, measure

STORE = ROOT / "model_store" / "poster-genres"


def model_alone(version: Path, batch: int, seconds: float = 5.0) -> float:
    """Images per second of the loaded model through the classifier's compiled call."""
    from poster_genres.classifier import GenreClassifier

    classifier = GenreClassifier.open(version, max_batch=16)
    classifier.warm_up()
    inputs = np.random.default_rng(0).random((batch, 400, 400, 3), dtype=np.float32)
    classifier.predict(inputs)
    done, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        classifier.predict(inputs)
        done += batch
    return done / (time.perf_counter() - started)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.versions", description=__doc__)
    parser.add_argument("old")
    parser.add_argument("new")
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16, 64])
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "VERSIONS.md")
    args = parser.parse_args(argv)
    posters, described = load_posters()
    rows: dict[str, list[Row]] = {args.old: [], args.new: []}
    for _ in range(args.rounds):
        for version in (args.old, args.new):
            rows[version] += measure(
                version, "ours", STORE / version, posters, args.concurrency, args.duration
            )
    alone = {v: {b: model_alone(STORE / v, b) for b in (1, 16)} for v in (args.old, args.new)}
    lines = [
        "# Serving throughput: two model versions, one run",
        "",
        f"{machine()}; {described}; {args.rounds} alternating rounds of {args.duration:.0f} s "
        f"per row, closed-loop clients on 127.0.0.1; `python -m bench.versions {args.old} "
        f"{args.new}`.",
        "",
        "| version | concurrency | req/s (mean of rounds) | p50 ms | p99 ms | errors | 503s |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    means: dict[tuple[str, int], float] = {}
    for version, measured in rows.items():
        for c in args.concurrency:
            same = [r for r in measured if r.concurrency == c]
            rps = float(np.mean([r.rps for r in same]))
            means[version, c] = rps
            latencies = [x for r in same for x in r.latencies]
            p50, p99 = (float(np.percentile(latencies, q) * 1000) for q in (50, 99))
            errors = sum(r.errors for r in same)
            refused = sum(r.statuses.get(503, 0) for r in same)
            lines.append(
                f"| {version} | {c} | {rps:.1f} | {p50:.0f} | {p99:.0f} | {errors} | {refused} |"
            )
    lines += [
        "",
        "| version | model alone, batch 1 (img/s) | batch 16 (img/s) |",
        "|---|---:|---:|",
    ]
    for version, speeds in alone.items():
        lines.append(f"| {version} | {speeds[1]:.1f} | {speeds[16]:.1f} |")
    lines.append("")
    for c in args.concurrency:
        ratio = means[args.new, c] / means[args.old, c]
        lines.append(
            f"- concurrency {c}: {args.new} serves {ratio:.1%} of {args.old}'s throughput."
        )
    text = "\n".join(lines) + "\n"
    args.out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
