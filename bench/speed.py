"""The service against the compiled model alone and against an earlier commit, in one run.

    .venv/bin/python -m bench.speed BEFORE_REV [--duration 15] [--rounds 2] [--explain-rate 1]

Serves the shipped model from a checkout of BEFORE_REV (a git worktree) and from this tree, in
alternating rounds, with bench.run's closed-loop clients and posters at each concurrency; then this
tree at concurrency 16 while one client asks /explain at `--explain-rate` per second; and the
compiled model alone at the service's batch sizes. Writes bench/SPEED.md. Run it while nothing else
runs.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

import httpx
import numpy as np

from bench.harness import (
    ROOT,
    SERVICE_BATCH_SIZES,
    Row,
    checkout_of,
    drive,
    load_posters,
    machine,
    measure,
    model_alone,
    server,
)


async def explain_loop(url: str, posters: list[bytes], rate: float, until: float) -> list[int]:
    """One /explain every 1/rate seconds until `until`; the status of each."""
    statuses = []
    async with httpx.AsyncClient(timeout=30) as client:
        i = 0
        while time.monotonic() < until:
            started = time.monotonic()
            answer = await client.post(url, files={"file": ("p.jpg", posters[i % len(posters)])})
            statuses.append(answer.status_code)
            i += 1
            await asyncio.sleep(max(0.0, 1 / rate - (time.monotonic() - started)))
    return statuses


def with_explanations(
    model_dir: Path, posters: list[bytes], duration_s: float, rate: float
) -> tuple[Row, list[int]]:
    with server("ours", model_dir) as service:
        base = service.url
        asyncio.run(drive(f"{base}/predict", posters, 16, 3.0, Row("w", "w", 16, 3.0)))
        row = Row("shipped", "ours + /explain", 16, duration_s)

        async def both() -> list[int]:
            until = time.monotonic() + duration_s
            explaining = asyncio.ensure_future(
                explain_loop(f"{base}/explain", posters, rate, until)
            )
            await drive(f"{base}/predict", posters, 16, duration_s, row)
            return await explaining

        return row, asyncio.run(both())


def summary(rows: list[Row]) -> tuple[float, float, float, int]:
    latencies = [x for r in rows for x in r.latencies]
    p50, p99 = (float(np.percentile(latencies, q) * 1000) for q in (50, 99))
    return float(np.mean([r.rps for r in rows])), p50, p99, sum(r.errors for r in rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.speed", description=__doc__)
    parser.add_argument("before", help="the commit to compare with (e.g. the one before a change)")
    parser.add_argument("--duration", type=float, default=15.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16, 64])
    parser.add_argument("--explain-rate", type=float, default=1.0, help="/explain per second")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "SPEED.md")
    args = parser.parse_args(argv)
    from poster_genres.artifact import resolve_version_dir

    shipped = resolve_version_dir(ROOT / "model_store", "poster-genres", None)
    posters, described = load_posters()
    rows: dict[str, list[Row]] = {"before": [], "after": []}
    explained: list[tuple[Row, list[int]]] = []
    with checkout_of(args.before) as checkout:
        for _ in range(args.rounds):
            for label, cwd in (("before", checkout), ("after", ROOT)):
                rows[label] += measure(
                    label, "ours", shipped, posters, args.concurrency, args.duration, cwd
                )
            if args.explain_rate > 0:
                explained.append(
                    with_explanations(shipped, posters, args.duration, args.explain_rate)
                )
                print(explained[-1][0].line(), flush=True)
    alone = model_alone(shipped, SERVICE_BATCH_SIZES)

    lines = [
        "# Serving speed: this tree vs an earlier commit vs the model alone, one run",
        "",
        f"{machine()}; model {shipped.name}; {described}; {args.rounds} alternating rounds of "
        f"{args.duration:.0f} s per row, closed-loop clients on 127.0.0.1; "
        f"`python -m bench.speed {args.before}`.",
        "",
        "| code | concurrency | req/s (mean of rounds) | p50 ms | p99 ms | errors |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    means: dict[tuple[str, int], tuple[float, float, float, int]] = {}
    for label, measured in rows.items():
        for c in args.concurrency:
            means[label, c] = summary([r for r in measured if r.concurrency == c])
            rps, p50, p99, errors = means[label, c]
            name = f"before ({args.before})" if label == "before" else "after (this tree)"
            lines.append(f"| {name} | {c} | {rps:.1f} | {p50:.1f} | {p99:.0f} | {errors} |")
    if explained:
        rps, p50, p99, errors = summary([row for row, _ in explained])
        statuses = [s for _, got in explained for s in got]
        lines.append(
            f"| after, with {args.explain_rate:g} /explain per second | 16 | {rps:.1f} | "
            f"{p50:.1f} | {p99:.0f} | {errors} |"
        )
    lines += [
        "",
        "The compiled model alone (float32 inputs in memory, same threads):",
        "",
        "| batch | img/s | ms a call | cores busy | CPU ms per image |",
        "|---:|---:|---:|---:|---:|",
        *(
            f"| {b} | {a.images_per_s:.1f} | {a.ms_per_call:.1f} | {a.cores:.2f} | "
            f"{a.cpu_ms_per_image:.1f} |"
            for b, a in sorted(alone.items())
        ),
        "",
    ]
    after16 = means["after", 16][0]
    lines.append(
        f"- concurrency 16: {after16:.1f} req/s = {after16 / alone[16].images_per_s:.0%} of the model alone "
        f"at batch 16 (before: {means['before', 16][0] / alone[16].images_per_s:.0%})."
    )
    if 1 in args.concurrency:
        lines.append(
            f"- concurrency 1: p50 {means['after', 1][1]:.1f} ms vs the model alone at batch 1 "
            f"{alone[1].ms_per_call:.1f} ms + 5 ms = {alone[1].ms_per_call + 5:.1f} ms "
            f"(before: {means['before', 1][1]:.1f} ms)."
        )
    if 64 in args.concurrency:
        lines.append(
            f"- concurrency 64: {means['after', 64][0]:.1f} req/s vs {after16:.1f} at 16 "
            f"(before: {means['before', 64][0]:.1f} vs {means['before', 16][0]:.1f})."
        )
    if explained:
        rps = summary([row for row, _ in explained])[0]
        lines.append(
            f"- with {args.explain_rate:g} /explain per second, /predict at concurrency 16 keeps "
            f"{rps / after16:.0%} of its throughput; {statuses.count(200)} of {len(statuses)} "
            f"explanations answered 200."
        )
    text = "\n".join(lines) + "\n"
    args.out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
