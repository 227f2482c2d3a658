"""Both runtimes on this CPU, in one run: the model alone at each shape the service runs, then
the service under each runtime.

    python -m bench.runtimes [--seconds 5] [--duration 15] [--out bench/RUNTIMES.md]

The CPU's model name and vector extensions (AVX2, AVX-512) come first: TensorFlow runs this model
~5x slower without AVX-512, so every figure belongs to its CPU, and ratios compare within the run.
Writes a Markdown report; the goals it reports on are the runtime issue's.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from bench.harness import (
    ROOT,
    SERVICE_BATCH_SIZES,
    Alone,
    Row,
    load_posters,
    machine,
    measure,
    model_alone,
    server,
    simd,
)

STORE = ROOT / "model_store" / "poster-genres"
# (label, runtime, callers at once, batch sizes): LiteRT also with 2 interpreters of 1 thread each.
ALONE = (
    ("Keras", "keras", 1, SERVICE_BATCH_SIZES),
    ("LiteRT, 1 interpreter x 2 threads", "litert", 1, SERVICE_BATCH_SIZES),
    ("LiteRT, 2 interpreters x 1 thread", "litert", 2, (1, 2, 4)),
)
# (label, POSTER_* settings) of the service runs.
SERVICES = (
    ("Keras, batches up to 16", {"POSTER_RUNTIME": "keras", "POSTER_MAX_BATCH_SIZE": "16"}),
    ("LiteRT 1x2, batches up to 16", {"POSTER_RUNTIME": "litert", "POSTER_INTERPRETERS": "1"}),
    ("LiteRT 2x1, batches up to 16", {"POSTER_RUNTIME": "litert", "POSTER_INTERPRETERS": "2"}),
    (
        "LiteRT 2x1, batches up to 4",
        {"POSTER_RUNTIME": "litert", "POSTER_INTERPRETERS": "2", "POSTER_MAX_BATCH_SIZE": "4"},
    ),
    (
        "LiteRT 2x1, batch 1",
        {"POSTER_RUNTIME": "litert", "POSTER_INTERPRETERS": "2", "POSTER_MAX_BATCH_SIZE": "1"},
    ),
    ("LiteRT, defaults", {"POSTER_RUNTIME": "litert"}),
)


def cold_start_s(model_dir: Path, settings: dict[str, str]) -> float:
    """Seconds from process start to ready (the server context waits for /health/ready)."""
    started = time.perf_counter()
    with server("ours", model_dir, settings=settings):
        return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.runtimes", description=__doc__)
    parser.add_argument("--seconds", type=float, default=5.0, help="per model-alone size")
    parser.add_argument("--duration", type=float, default=15.0, help="per service row")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "RUNTIMES.md")
    args = parser.parse_args(argv)
    print(f"machine: {machine()}", flush=True)
    version = sorted(p for p in STORE.iterdir() if p.is_dir())[-1]

    alone: dict[str, dict[int, Alone]] = {}
    for label, runtime, parallel, sizes in ALONE:
        alone[label] = model_alone(version, sizes, args.seconds, runtime, parallel)
        print(
            label, {s: f"{a.images_per_s:.1f} img/s" for s, a in alone[label].items()}, flush=True
        )

    posters, described = load_posters()
    rows: dict[str, list[Row]] = {}
    starts: dict[str, float] = {}
    for label, settings in SERVICES:
        starts[label] = cold_start_s(version, settings)
        rows[label] = measure(
            "shipped", label, version, posters, args.concurrency, args.duration, settings=settings
        )
    args.out.write_text(report(version, alone, rows, starts, described, args))
    print(f"wrote {args.out}")
    return 0


def report(
    version: Path,
    alone: dict[str, dict[int, Alone]],
    rows: dict[str, list[Row]],
    starts: dict[str, float],
    described: str,
    args: argparse.Namespace,
) -> str:
    fastest_label, fastest = max(
        ((label, a) for label, sizes in alone.items() for a in sizes.values()),
        key=lambda pair: pair[1].images_per_s,
    )
    lines = [
        "# Runtimes: Keras and LiteRT on one CPU, same run",
        "",
        f"`python -m bench.runtimes` on {machine()}; model {version.name}; {described};",
        f"{args.seconds:.0f} s per model-alone size, {args.duration:.0f} s per service row, "
        "closed-loop clients on 127.0.0.1.",
        "",
        "## The model alone (uint8 pixels in memory)",
        "",
        "| runtime | " + " | ".join(f"batch {s}" for s in SERVICE_BATCH_SIZES) + " |",
        "|---|" + "---:|" * len(SERVICE_BATCH_SIZES),
    ]
    for label, sizes in alone.items():
        cells = [f"{sizes[s].images_per_s:.1f}" if s in sizes else "" for s in SERVICE_BATCH_SIZES]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines += [
        "",
        f"Images per second. Fastest: {fastest.images_per_s:.1f} ({fastest_label}).",
        "",
        "## The service",
        "",
        "| runtime | ready after | conc. | req/s | p50 ms | p99 ms | errors | 503s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for label, measured in rows.items():
        for row in measured:
            lines.append(
                f"| {label} | {starts[label]:.1f} s | {row.concurrency} | {row.rps:.1f} | "
                f"{row.pct(50):.1f} | {row.pct(99):.1f} | {row.errors} | "
                f"{row.statuses.get(503, 0)} |"
            )
    keras16 = next(r for r in rows[SERVICES[0][0]] if r.concurrency == 16)
    best16 = max(
        (r for label, measured in rows.items() if label != SERVICES[0][0] for r in measured
         if r.concurrency == 16),
        key=lambda r: r.rps,
    )  # fmt: skip
    lite1 = alone[ALONE[1][0]][1]
    best1 = next(r for r in rows[SERVICES[-1][0]] if r.concurrency == 1)
    avx2 = simd() != "AVX-512"
    lines += [
        "",
        "## Goals",
        "",
        f"- CPU kind: {simd()}.",
        f"- Concurrency 16, best LiteRT service ({best16.server}): {best16.rps:.1f} req/s = "
        f"{best16.rps / fastest.images_per_s:.0%} of the fastest runtime-alone figure "
        f"(goal on AVX2: >= 85%), {best16.rps / keras16.rps:.2f}x the Keras service "
        f"(goal on AVX2: >= 2x; on AVX-512: no slower)"
        + ("" if avx2 else " — the AVX2 goals were not measured on this CPU"),
        f"- Concurrency 1, LiteRT defaults: p50 {best1.pct(50):.1f} ms against LiteRT's batch-1 "
        f"call {lite1.ms_per_call:.1f} ms + 5 ms = {lite1.ms_per_call + 5:.1f} ms.",
    ]
    lines += ceiling(best16, fastest)
    return "\n".join(lines) + "\n"


def ceiling(row: Row, fastest: Alone) -> list[str]:
    """What the CPU allows at best: every request's CPU (server and client) in that row, against
    the cores, if they were never idle; and the most a request may cost outside the model for
    85% of the fastest model-alone figure."""
    cores = len(os.sched_getaffinity(0))
    server_ms, client_ms = (
        cpu_s / max(row.ok, 1) * 1000 for cpu_s in (row.server_cpu_s, row.client_cpu_s)
    )
    per_request_ms = server_ms + client_ms
    most = cores * 1000 / per_request_ms
    allowed_ms = cores * 1000 / (0.85 * fastest.images_per_s) - fastest.cpu_ms_per_image
    return [
        f"- The CPU's own ceiling ({row.server}, concurrency 16): each answered request cost "
        f"{per_request_ms:.1f} ms of CPU (server {server_ms:.1f}, "
        f"client {client_ms:.1f}), so {cores} cores never idle "
        f"answer at most {most:.1f} req/s = {most / fastest.images_per_s:.0%} of the fastest "
        f"model-alone figure. The model alone costs {fastest.cpu_ms_per_image:.1f} ms of CPU an "
        f"image at its fastest; 85% of it leaves {allowed_ms:.1f} ms a request for everything "
        f"else (HTTP, decoding, the resize, the load client) on these cores.",
    ]


if __name__ == "__main__":
    raise SystemExit(main())
