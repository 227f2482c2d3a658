"""Where a request's time goes: CPU per thread of the running service, and its Python hot spots.

    .venv/bin/pip install py-spy          # once; optional, for the Python part
    .venv/bin/python -m bench.profile [--concurrency 16] [--duration 20]

Serves the shipped model, drives it with bench.run's closed-loop clients, and reads each of the
server's threads' CPU time from /proc before and after (the service names its threads: `python` is
the event loop, `decode_N` the decoders, `inference_0` the model thread; TensorFlow's own pools have
their names). With py-spy installed, it also samples the Python stacks of every thread (`--idle` off:
only running code) and lists the functions that take the most samples, by thread. Writes
bench/PROFILE.md (figures; the findings are written by hand below them). Run it while nothing else
runs.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.harness import (
    ROOT,
    TF_THREADS,
    Row,
    drive,
    load_posters,
    machine,
    model_alone,
    server,
    stat_cpu_s,
)


def thread_cpu(pid: int) -> dict[int, tuple[str, float]]:
    """Every thread of `pid`: (name, CPU seconds so far)."""
    threads = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            threads[int(task.name)] = (
                (task / "comm").read_text().strip(),
                stat_cpu_s(task / "stat"),
            )
        except OSError:
            continue  # the thread ended meanwhile
    return threads


def group(tid: int, pid: int, name: str) -> str:
    """Thread groups: numbered pools are one group; threads that kept the process's name are
    TensorFlow's (Eigen's) pools, except the main thread, which runs the event loop."""
    if tid == pid:
        return "event loop (main thread)"
    if name == "python":
        return "unnamed: TensorFlow's compute pool"
    return re.sub(r"[_-]?\d+$", "_N", name)


def stacks(raw: Path) -> list[tuple[str, list[str], int]]:
    """(thread, frames root first, samples) from py-spy's raw output; thread ids dropped."""
    found = []
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        if len(frames) > 1 and count.isdigit():
            thread = re.sub(r"\(\d+\)", "", frames[0]).strip()
            found.append((thread, frames[1:], int(count)))
    return found


def hot_spots(raw: Path, top: int = 12) -> list[tuple[str, str, int]]:
    """(thread, function, samples), most sampled first: where running code was (self time)."""
    counts: collections.Counter[tuple[str, str]] = collections.Counter()
    for thread, frames, count in stacks(raw):
        counts[thread, frames[-1]] += count
    return [(t, f, n) for (t, f), n in counts.most_common(top)]


def main_thread_inclusive(raw: Path, top: int = 15) -> list[tuple[str, int]]:
    """The event loop's own code (app/, starlette, fastapi, uvicorn, h11, multipart, pydantic),
    by inclusive samples: what each function costs with everything it calls."""
    wanted = re.compile(
        r"[(/](app|starlette|fastapi|uvicorn|h11|multipart|python_multipart|pydantic)/"
    )
    # The frames around the whole loop (the server's main, uvicorn's runner) hold every sample.
    everything = re.compile(r"app/(__main__|server)\.py|uvicorn/(_compat|server|main)\.py")
    counts: collections.Counter[str] = collections.Counter()
    for thread, frames, count in stacks(raw):
        frames = [f for f in frames if not everything.search(f)]
        if "MainThread" not in thread:
            continue
        for frame in {f for f in frames if wanted.search(f)}:
            counts[frame] += count
    return counts.most_common(top)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "PROFILE.md")
    args = parser.parse_args(argv)
    from poster_genres.artifact import resolve_version_dir

    shipped = resolve_version_dir(ROOT / "model_store", "poster-genres", None)
    posters, described = load_posters()
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    have_py_spy = Path(py_spy).exists()
    with tempfile.TemporaryDirectory() as folder, server("ours", shipped) as service:
        process, url = service.process, f"{service.url}/predict"
        asyncio.run(drive(url, posters, args.concurrency, 3.0, Row("w", "w", 1, 3.0)))
        raw = Path(folder) / "stacks.txt"
        before = thread_cpu(process.pid)
        spy = None
        if have_py_spy:
            spy = subprocess.Popen(
                [py_spy, "record", "--pid", str(process.pid), "--duration", str(int(args.duration)),
                 "--format", "raw", "--threads", "--rate", "50", "--nonblocking", "-o", str(raw)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
        row = Row("shipped", "ours", args.concurrency, args.duration)
        client_cpu = time.process_time()
        started = time.monotonic()
        asyncio.run(drive(url, posters, args.concurrency, args.duration, row))
        wall = time.monotonic() - started
        client_cpu = time.process_time() - client_cpu
        after = thread_cpu(process.pid)
        if spy is not None:
            spy.wait(timeout=60)
        spots = hot_spots(raw) if raw.exists() else []
        loop_spots = main_thread_inclusive(raw) if raw.exists() else []

    alone = model_alone(shipped, (16,))[16]
    cores = len(os.sched_getaffinity(0))
    by_group: collections.defaultdict[str, float] = collections.defaultdict(float)
    for tid, (name, cpu) in after.items():
        by_group[group(tid, process.pid, name)] += cpu - before.get(tid, (name, 0.0))[1]
    requests = row.ok
    total = sum(by_group.values())
    lines = [
        "# Profile of the service under load",
        "",
        f"`python -m bench.profile --concurrency {args.concurrency} --duration "
        f"{args.duration:.0f}` on {machine()}; model {shipped.name}; {described}; TensorFlow "
        f"threads {TF_THREADS}.",
        "",
        f"{requests} requests answered 200 in {wall:.1f} s ({requests / wall:.1f} req/s, p50 "
        f"{row.pct(50):.0f} ms); server CPU {total:.1f} s = {total / wall:.2f} of the 2 cores; "
        f"the load client's own CPU {client_cpu:.1f} s ({client_cpu / wall:.2f} cores).",
        "",
        "| thread group | CPU s | share of server CPU | CPU ms per request |",
        "|---|---:|---:|---:|",
    ]
    for name, cpu in sorted(by_group.items(), key=lambda item: item[1], reverse=True):
        if cpu < 0.05:
            continue
        lines.append(
            f"| `{name}` | {cpu:.1f} | {cpu / total:.0%} | {cpu / max(requests, 1) * 1000:.2f} |"
        )
    per_request = (total + client_cpu) / max(requests, 1) * 1000
    ceiling = cores * 1000 / per_request
    lines += [
        "",
        f"The compiled model alone at batch 16, same run: {alone.images_per_s:.1f} img/s with "
        f"{alone.cores:.2f} cores busy, {alone.cpu_ms_per_image:.1f} ms of CPU per image.",
        "",
        f"**The ceiling on {cores} cores**: every request costs {per_request:.1f} ms of CPU in all "
        f"(server threads and the load client), so even with every core busy all the time "
        f"{cores} cores answer at most {ceiling:.0f} req/s = {ceiling / alone.images_per_s:.0%} of "
        f"the model alone at batch 16; measured here {requests / wall:.1f} req/s = "
        f"{requests / wall / alone.images_per_s:.0%} of it, "
        f"{requests / wall / ceiling:.0%} of the ceiling.",
    ]
    if spots:
        lines += [
            "",
            "Most sampled Python functions (self time, py-spy at 50 Hz, running code only):",
            "",
            "| thread | function | samples |",
            "|---|---|---:|",
        ]
        lines += [f"| {t} | `{f}` | {n} |" for t, f, n in spots]
    if loop_spots:
        lines += [
            "",
            "The event loop's code by inclusive samples (a function with all it calls):",
            "",
            "| function | samples |",
            "|---|---:|",
        ]
        lines += [f"| `{f}` | {n} |" for f, n in loop_spots]
    text = "\n".join(lines) + "\n"
    print(text)
    marker = "\n## Findings"
    previous = args.out.read_text() if args.out.exists() else ""
    findings = previous[previous.index(marker) :] if marker in previous else ""
    args.out.write_text(text + findings)
    return 0


if __name__ == "__main__":
    sys.exit(main())
