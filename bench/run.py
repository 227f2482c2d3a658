"""Load benchmark: the tutorial-style server vs our service (batching off, then default), one run.

    .venv/bin/python -m bench.run            # full: 20 s per row, both architectures, 5-minute soak
    .venv/bin/python -m bench.run --quick    # smoke: 3 s per row, shipped model only, no soak

Each server is started in turn with the same model file and the same TensorFlow thread settings and
driven by closed-loop clients (each sends its next poster when the previous answer arrives) at each
concurrency. Real posters come from ../shared/data when present, synthetic ones otherwise. Traffic goes
to 127.0.0.1 only. Writes bench/RESULTS.md and prints one line per row.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import platform
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

from bench import loadclient

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "Multi_Label_dataset"
STAGES = ("decode", "preprocess", "queue", "inference")
# Same threads for every server, so the comparison is of serving code, not of TF settings.
TF_THREADS = {"TF_NUM_INTRAOP_THREADS": "2", "TF_NUM_INTEROP_THREADS": "2"}
# The batch shapes the service compiles and runs: bucket_sizes of the default
# POSTER_MAX_BATCH_SIZE, written out so that bench's own process never imports TensorFlow (a test
# keeps the two equal).
SERVICE_BATCH_SIZES = (1, 2, 3, 4, 6, 8, 12, 16)


@dataclass
class Row:
    arch: str
    server: str
    concurrency: int
    duration_s: float
    latencies: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    timeouts: int = 0
    connection_errors: int = 0
    peak_rss_mb: float = 0.0
    client_cpu_s: float = 0.0
    stages_ms: dict[str, float] = field(default_factory=dict)

    @property
    def ok(self) -> int:
        return self.statuses.get(200, 0)

    @property
    def rps(self) -> float:
        return self.ok / self.duration_s

    def pct(self, q: float) -> float:
        if not self.latencies:
            return float("nan")
        return float(np.percentile(self.latencies, q) * 1000)

    @property
    def errors(self) -> int:
        others = sum(n for s, n in self.statuses.items() if s not in (200, 503))
        return others + self.timeouts + self.connection_errors

    def line(self) -> str:
        return (
            f"{self.arch:<8} {self.server:<16} c={self.concurrency:<3} {self.rps:7.1f} req/s  "
            f"p50 {self.pct(50):7.0f} ms  p95 {self.pct(95):7.0f}  p99 {self.pct(99):7.0f}  "
            f"errors {self.errors}  503s {self.statuses.get(503, 0)}  "
            f"RSS {self.peak_rss_mb:6.0f} MB  client CPU {self.client_cpu_s:5.1f} s"
        )


def load_posters(limit: int = 200) -> tuple[list[bytes], str]:
    if (DATA / "Images").is_dir():
        paths = sorted((DATA / "Images").glob("*.jpg"))[:limit]
        return [p.read_bytes() for p in paths], f"{len(paths)} real posters from ../shared/data"
    rng = np.random.default_rng(0)
    posters = []
    for _ in range(50):
        buffer = io.BytesIO()
        pixels = rng.integers(0, 255, (444, 300, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(buffer, format="JPEG", quality=85)
        posters.append(buffer.getvalue())
    return posters, "50 synthetic 300x444 JPEGs (../shared/data absent)"


def free_port() -> int:
    """A loopback port nobody listens on now (the kernel's pick, so two runs never collide)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def stat_cpu_s(stat: Path) -> float:
    """User + system CPU seconds so far, from a /proc/<pid>/stat or /proc/<pid>/task/<tid>/stat."""
    text = stat.read_text()
    fields = text[text.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0.0
    match = re.search(r"VmRSS:\s+(\d+) kB", text)
    return int(match.group(1)) / 1024 if match else 0.0


class RssSampler:
    """Samples a process's RSS every 100 ms in a thread; keeps the peak and the series."""

    def __init__(self, pid: int) -> None:
        self.pid, self.peak, self.series = pid, 0.0, []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            value = rss_mb(self.pid)
            self.peak = max(self.peak, value)
            self.series.append((time.monotonic(), value))
            self._stop.wait(0.1)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


@dataclass(frozen=True)
class Alone:
    """The model alone at one batch size."""

    images_per_s: float
    ms_per_call: float
    cores: float  # CPU time / wall time while it ran

    @property
    def cpu_ms_per_image(self) -> float:
        return self.cores * 1000 / self.images_per_s


def model_alone(
    model_dir: Path,
    sizes: tuple[int, ...] = (1, 16),
    seconds: float = 5.0,
    runtime: str = "keras",
    parallel: int = 1,
) -> dict[int, Alone]:
    """The model alone under `runtime`, uint8 pixels already in memory, at each batch size
    (bench/model_alone.py): a fresh process with the servers' thread settings, nothing else."""
    env = {**os.environ, **TF_THREADS, "TF_CPP_MIN_LOG_LEVEL": "3"}
    argv = [sys.executable, "-m", "bench.model_alone", str(model_dir), "--runtime", runtime]
    argv += ["--sizes", *map(str, sizes), "--seconds", str(seconds), "--parallel", str(parallel)]
    output = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    rates = json.loads(output.stdout.strip().splitlines()[-1])
    return {int(size): Alone(*rate) for size, rate in rates.items()}


@contextmanager
def checkout_of(revision: str) -> Iterator[Path]:
    """A temporary git worktree of `revision`, to serve an earlier commit in the same run."""
    with tempfile.TemporaryDirectory() as folder:
        checkout = Path(folder) / "checkout"
        subprocess.run(
            ["git", "worktree", "add", "--detach", str(checkout), revision],
            cwd=ROOT,
            check=True,
            capture_output=True,
        )
        try:
            yield checkout
        finally:
            subprocess.run(
                ["git", "worktree", "remove", "--force", str(checkout)], cwd=ROOT, check=False
            )


@contextmanager
def health_poller(url: str, timeout_s: float = 5.0) -> Iterator[list[float]]:
    """Polls /health every 50 ms from its own thread (its own connection, no event loop shared with
    load clients, whose scheduling would otherwise count as server latency); yields the
    latencies, failures as inf."""
    latencies: list[float] = []
    done = threading.Event()

    def poll() -> None:
        with httpx.Client(timeout=timeout_s) as client:
            while not done.is_set():
                started = time.perf_counter()
                try:
                    ok = client.get(f"{url}/health").status_code == 200
                except httpx.HTTPError:
                    ok = False
                latencies.append(time.perf_counter() - started if ok else float("inf"))
                time.sleep(0.05)

    thread = threading.Thread(target=poll, daemon=True)
    thread.start()
    try:
        yield latencies
    finally:
        done.set()
        thread.join()


@contextmanager
def server(
    kind: str,
    model_dir: Path,
    port: int,
    cwd: Path = ROOT,
    settings: dict[str, str] | None = None,
) -> Iterator[subprocess.Popen[bytes]]:
    """Start one server from the code in `cwd` (a checkout of another commit, for comparisons),
    with POSTER_* `settings` added to its environment."""
    env = {**os.environ, **TF_THREADS, "POSTER_LOG_LEVEL": "WARNING", **(settings or {})}
    if kind == "baseline":
        env["BASELINE_MODEL_DIR"] = str(model_dir)
        argv = [sys.executable, "-m", "uvicorn", "bench.baseline_server:app", "--port", str(port)]
        argv += ["--workers", "1", "--log-level", "warning", "--no-access-log"]
    else:
        env.update(
            POSTER_MODEL_STORE=str(model_dir.parent.parent),
            POSTER_MODEL_NAME=model_dir.parent.name,
            POSTER_MODEL_VERSION=model_dir.name,
            POSTER_HOST="127.0.0.1",
            POSTER_PORT=str(port),
        )
        if kind == "ours, no batching":
            env["POSTER_MAX_BATCH_SIZE"] = "1"
        argv = [sys.executable, "-m", "app"]
    process = subprocess.Popen(argv, cwd=cwd, env=env, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health/ready", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.5)
        else:
            raise RuntimeError(f"{kind} server never became ready")
        yield process
    finally:
        process.terminate()
        process.wait(timeout=60)


async def drive(
    url: str, posters: list[bytes], concurrency: int, duration_s: float, row: Row
) -> None:
    """Closed loop: `concurrency` clients, each posting its next poster when answered (the lean
    client of bench/loadclient.py, so the client's CPU takes little from the server's cores)."""
    await loadclient.drive(url, posters, concurrency, duration_s, row)


def stage_sums(port: int) -> dict[str, tuple[float, float]]:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    sums = {}
    for stage in STAGES:
        # Labels come sorted, and the runtime label is there from 2.2 on (bench.speed serves
        # earlier commits too): the stage's sample whatever its other labels.
        total = re.search(rf'poster_stage_seconds_sum{{[^}}]*stage="{stage}"[^}}]*}} (\S+)', text)
        count = re.search(rf'poster_stage_seconds_count{{[^}}]*stage="{stage}"[^}}]*}} (\S+)', text)
        sums[stage] = (
            float(total.group(1)) if total else 0.0,
            float(count.group(1)) if count else 0.0,
        )
    return sums


def measure(
    arch: str,
    kind: str,
    model_dir: Path,
    posters: list[bytes],
    levels: list[int],
    duration_s: float,
    cwd: Path = ROOT,
    settings: dict[str, str] | None = None,
) -> list[Row]:
    port = free_port()
    rows = []
    with server(kind, model_dir, port, cwd, settings) as process:
        url = f"http://127.0.0.1:{port}/predict"
        for concurrency in levels:
            warm = Row(arch, kind, concurrency, 1.0)
            asyncio.run(drive(url, posters, concurrency, min(3.0, duration_s), warm))
            row = Row(arch, kind, concurrency, duration_s)
            before = stage_sums(port) if kind != "baseline" else {}
            cpu = time.process_time()
            with RssSampler(process.pid) as sampler:
                asyncio.run(drive(url, posters, concurrency, duration_s, row))
            row.client_cpu_s = time.process_time() - cpu
            row.peak_rss_mb = sampler.peak
            if before:
                after = stage_sums(port)
                for stage in STAGES:
                    n = after[stage][1] - before[stage][1]
                    row.stages_ms[stage] = (
                        (after[stage][0] - before[stage][0]) / n * 1000 if n else 0
                    )
            print(row.line(), flush=True)
            rows.append(row)
    return rows


def soak(model_dir: Path, posters: list[bytes], seconds: float) -> dict[str, float]:
    """Concurrency 16 for `seconds`: RSS after a 30 s warm-up vs the highest RSS after it."""
    port = 18790
    with server("ours", model_dir, port) as process:
        url = f"http://127.0.0.1:{port}/predict"
        row = Row("soak", "ours", 16, seconds)
        with RssSampler(process.pid) as sampler:
            asyncio.run(drive(url, posters, 16, seconds, row))
        start = sampler.series[0][0]
        warmed = [v for t, v in sampler.series if t - start >= min(30.0, seconds / 4)]
        result = {
            "seconds": seconds,
            "requests": float(row.ok),
            "errors": float(row.errors),
            "rss_after_warmup_mb": warmed[0],
            "rss_peak_after_warmup_mb": max(warmed),
            "growth_mb": max(warmed) - warmed[0],
        }
        print(
            f"soak c=16 {seconds:.0f} s: {row.ok} requests, RSS growth {result['growth_mb']:.1f} MB"
        )
        return result


def untrained_seed_version(genres: list[str], folder: Path) -> Path:
    from poster_genres.artifact import write_version
    from training.model import build_model

    metadata = {
        "genres": genres,
        "thresholds": [0.5] * len(genres),
        "architecture": "seed",
        "created_at": "untrained",
    }
    return write_version(
        folder, "poster-genres", "seed-untrained", build_model("seed", len(genres)), metadata
    )


def simd() -> str:
    """AVX-512, AVX2 or neither: TensorFlow runs this model ~5x slower without AVX-512."""
    flags: set[str] = set()
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("flags"):
            flags = set(line.split(":", 1)[1].split())
            break
    if "avx512f" in flags:
        return "AVX-512"
    return "AVX2, no AVX-512" if "avx2" in flags else "no AVX2"


def machine() -> str:
    """The CPU (its model name and vector extensions), cores, memory and Python of this run."""
    cpu = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    cores = len(os.sched_getaffinity(0))
    return f"{cpu} ({simd()}), {cores} cores, {memory:.0f} GiB, Python {platform.python_version()}"


def model_share_lines(rows: list[Row], alone: dict[int, Alone]) -> list[str]:
    """Our service against the compiled model alone, measured in the same run."""
    lines = [
        "",
        "The compiled model alone in the same run, same model file and thread settings (float32 "
        "inputs already in memory; "
        + ", ".join(
            f"batch {b}: {alone[b].images_per_s:.1f} img/s, {alone[b].ms_per_call:.1f} ms a call"
            for b in sorted(alone)
        )
        + "):",
        "",
    ]
    best = max(alone)
    fastest = max(alone.values(), key=lambda a: a.images_per_s).images_per_s
    for r in rows:
        if r.arch != "shipped" or r.server != "ours":
            continue
        lines.append(
            f"- ours at concurrency {r.concurrency}: {r.rps:.1f} req/s = "
            f"{r.rps / alone[best].images_per_s:.0%} of the model alone at batch {best} "
            f"({r.rps / fastest:.0%} of its fastest size); "
            f"p50 {r.pct(50):.1f} ms"
            + (f" (model alone at batch 1: {alone[1].ms_per_call:.1f} ms)" if 1 in alone else "")
        )
    return lines


def report(
    rows: list[Row],
    soak_result: dict[str, float] | None,
    posters: str,
    quick: bool,
    alone: dict[int, Alone] | None = None,
) -> str:
    lines = [
        "# Benchmark results",
        "",
        f"Generated by `python -m bench.run{' --quick' if quick else ''}` on "
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC. Machine: {machine()}.",
        f"Traffic: {posters}, closed-loop clients on 127.0.0.1, {rows[0].duration_s:.0f} s per row "
        f"after a warm-up. TensorFlow threads for every server: {TF_THREADS}.",
        "",
        "| arch | server | conc. | ok req/s | × baseline | p50 ms | p95 ms | p99 ms | errors | 503s "
        "| peak RSS MB | client CPU s |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    baseline = {(r.arch, r.concurrency): r for r in rows if r.server == "baseline"}
    for r in rows:
        base = baseline.get((r.arch, r.concurrency))
        ratio = r.rps / base.rps if base and base.rps else float("nan")
        lines.append(
            f"| {r.arch} | {r.server} | {r.concurrency} | {r.rps:.1f} | {ratio:.2f} | {r.pct(50):.0f} "
            f"| {r.pct(95):.0f} | {r.pct(99):.0f} | {r.errors} | {r.statuses.get(503, 0)} "
            f"| {r.peak_rss_mb:.0f} | {r.client_cpu_s:.1f} |"
        )
    staged = [r for r in rows if r.stages_ms and r.concurrency in (1, 16)]
    if staged:
        lines += [
            "",
            "Where the time goes (mean ms per image, from the service's own /metrics):",
            "",
        ]
        lines += [
            "| arch | server | conc. | " + " | ".join(STAGES) + " |",
            "|---|---|---:|" + "---:|" * 4,
        ]
        for r in staged:
            lines.append(
                f"| {r.arch} | {r.server} | {r.concurrency} | "
                + " | ".join(f"{r.stages_ms[s]:.1f}" for s in STAGES)
                + " |"
            )
    if alone:
        lines += model_share_lines(rows, alone)
    if soak_result:
        lines += [
            "",
            f"Soak, our service at concurrency 16 for {soak_result['seconds']:.0f} s: "
            f"{soak_result['requests']:.0f} requests, {soak_result['errors']:.0f} errors, RSS "
            f"{soak_result['rss_after_warmup_mb']:.0f} MB after warm-up, peak "
            f"{soak_result['rss_peak_after_warmup_mb']:.0f} MB: growth "
            f"{soak_result['growth_mb']:.1f} MB.",
        ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--duration", type=float, default=None)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16, 64])
    parser.add_argument("--soak", type=float, default=None, help="seconds (full mode: 300)")
    parser.add_argument("--no-seed", action="store_true", help="skip the seed architecture")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "RESULTS.md")
    args = parser.parse_args(argv)
    duration = args.duration or (3.0 if args.quick else 20.0)
    soak_seconds = args.soak if args.soak is not None else (0 if args.quick else 300)

    sys.path.insert(0, str(ROOT))
    from poster_genres.artifact import read_json, resolve_version_dir

    shipped = resolve_version_dir(ROOT / "model_store", "poster-genres", None)
    posters, described = load_posters()
    servers = ("baseline", "ours, no batching", "ours")
    rows: list[Row] = []
    for kind in servers:
        rows += measure("shipped", kind, shipped, posters, args.concurrency, duration)
    if not (args.quick or args.no_seed):
        with tempfile.TemporaryDirectory() as folder:
            seed = untrained_seed_version(read_json(shipped / "genres.json"), Path(folder))
            for kind in servers:
                rows += measure("seed", kind, seed, posters, args.concurrency, duration)
    soak_result = soak(shipped, posters, soak_seconds) if soak_seconds else None
    alone = model_alone(shipped, SERVICE_BATCH_SIZES, 2.0 if args.quick else 5.0)
    for line in model_share_lines(rows, alone):
        print(line)
    args.out.write_text(report(rows, soak_result, described, args.quick, alone))
    print(f"wrote {args.out}")
    ours16 = [r for r in rows if r.arch == "shipped" and r.concurrency == 16]
    if len(ours16) == 3 and ours16[0].rps:
        print(f"shipped, c=16: ours/baseline = {ours16[2].rps / ours16[0].rps:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
