"""What the benchmarks share: servers started and stopped, posters, closed-loop load, and what is
measured (rows, RSS, CPU, the model alone, the machine). The command lines (bench.run,
bench.runtimes, bench.attack, ...) import from here, never from each other.

Every server gets a free loopback port (devkit.ports) and is only ever reached on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

from bench import loadclient
from devkit.dataset import IMAGES, PROJECT
from devkit.ports import free_port

ROOT = PROJECT
STAGES = ("decode", "preprocess", "queue", "inference")
# Same threads for every server, so the comparison is of serving code, not of TF settings.
TF_THREADS = {"TF_NUM_INTRAOP_THREADS": "2", "TF_NUM_INTEROP_THREADS": "2"}
# The batch shapes the service compiles and runs: bucket_sizes of the default
# POSTER_MAX_BATCH_SIZE, written out so that bench's own process never imports TensorFlow (a test
# keeps the two equal).
SERVICE_BATCH_SIZES = (1, 2, 3, 4, 6, 8, 12, 16)
# The API key of the services the attack benchmarks start; real requests send it, attackers not.
API_KEY = "attack-bench-key-0123456789"
READY_TIMEOUT_S = 180.0


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
    server_cpu_s: float = 0.0
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
    """Real posters from ../shared/data when present, else 50 synthetic ones; and what they are."""
    if IMAGES.is_dir():
        paths = sorted(IMAGES.glob("*.jpg"))[:limit]
        return [p.read_bytes() for p in paths], f"{len(paths)} real posters from ../shared/data"
    rng = np.random.default_rng(0)
    posters = []
    for _ in range(50):
        buffer = io.BytesIO()
        pixels = rng.integers(0, 255, (444, 300, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(buffer, format="JPEG", quality=85)
        posters.append(buffer.getvalue())
    return posters, "50 synthetic 300x444 JPEGs (../shared/data absent)"


# --- Servers -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Service:
    """A server process started by `running`, ready, on 127.0.0.1:port."""

    url: str  # http://127.0.0.1:PORT
    port: int
    process: subprocess.Popen[bytes]


@contextmanager
def memory_cgroup(limit_bytes: int) -> Iterator[Path]:
    """A fresh memory cgroup limited to `limit_bytes` (v1 or v2; needs root): the file to write a
    pid into. Removed afterwards, once its processes have gone."""
    v1 = Path("/sys/fs/cgroup/memory")
    base = v1 if v1.is_dir() else Path("/sys/fs/cgroup")
    group = base / f"poster-bench-{os.getpid()}-{time.monotonic_ns()}"
    group.mkdir()
    limit_file = "memory.limit_in_bytes" if base == v1 else "memory.max"
    (group / limit_file).write_text(str(limit_bytes))
    try:
        yield group / "cgroup.procs"
    finally:
        for _ in range(50):
            with contextlib.suppress(OSError):
                group.rmdir()
                break
            time.sleep(0.2)


def joining(procs: Path) -> Callable[[], None]:
    """What a child runs before exec to join the cgroup whose cgroup.procs file is `procs`."""

    def join() -> None:
        procs.write_text(str(os.getpid()))

    return join


def wait_ready(url: str, process: subprocess.Popen[bytes], timeout_s: float) -> None:
    """Poll `url` until it answers 200; fails when the process exits or `timeout_s` passes."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args!r} exited ({process.returncode}) before ready")
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(url, timeout=1).status_code == 200:
                return
        time.sleep(0.5)
    raise RuntimeError(f"{process.args!r} never became ready at {url}")


def stop(process: subprocess.Popen[bytes], timeout_s: float = 60) -> None:
    """SIGTERM, then SIGKILL if it has not exited within `timeout_s` (a decode thread that cannot
    be stopped); reaped either way. Nothing to do for a process that has exited."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@contextmanager
def running(
    argv: Sequence[str],
    port: int,
    env: Mapping[str, str],
    *,
    cwd: Path = ROOT,
    ready_path: str = "/health/ready",
    quiet: bool = False,
    memory_limit_bytes: int | None = None,
) -> Iterator[Service]:
    """`argv` started in `cwd` with `env` added to this environment, listening on `port`; yields
    once `ready_path` answers 200, stops it afterwards. `quiet` drops its output;
    `memory_limit_bytes` runs it in a memory cgroup of that size, joined before exec so that the
    limit applies from the first allocation and the server reads it as its own."""
    output = subprocess.DEVNULL if quiet else None
    with contextlib.ExitStack() as stack:
        join = None
        if memory_limit_bytes is not None:
            join = joining(stack.enter_context(memory_cgroup(memory_limit_bytes)))
        process = subprocess.Popen(
            list(argv),
            cwd=cwd,
            env={**os.environ, **env},
            stdout=output,
            stderr=output,
            preexec_fn=join,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            wait_ready(url + ready_path, process, READY_TIMEOUT_S)
            yield Service(url, port, process)
        finally:
            stop(process)


@contextmanager
def app_service(
    settings: Mapping[str, str] | None = None,
    *,
    cwd: Path = ROOT,
    quiet: bool = False,
    memory_limit_bytes: int | None = None,
) -> Iterator[Service]:
    """`python -m app` from the code in `cwd` (a checkout of another commit, for comparisons) on a
    free loopback port, with POSTER_* `settings` added to its environment; ready."""
    port = free_port()
    env = {"POSTER_LOG_LEVEL": "WARNING", **(settings or {})}
    env.update(POSTER_HOST="127.0.0.1", POSTER_PORT=str(port))
    with running(
        [sys.executable, "-m", "app"],
        port,
        env,
        cwd=cwd,
        quiet=quiet,
        memory_limit_bytes=memory_limit_bytes,
    ) as service:
        yield service


@contextmanager
def attack_target(
    settings: Mapping[str, str] | None = None,
    *,
    cwd: Path = ROOT,
    memory_limit_bytes: int | None = None,
) -> Iterator[Service]:
    """Our service as the attack benchmarks run it: the shipped model, API_KEY required, no drain
    delay (unless `settings` say otherwise), optionally in a memory cgroup."""
    base = {"POSTER_API_KEY": API_KEY, "POSTER_DRAIN_DELAY_S": "0"}
    with app_service(
        {**base, **(settings or {})}, cwd=cwd, memory_limit_bytes=memory_limit_bytes
    ) as service:
        yield service


@contextmanager
def server(
    kind: str,
    model_dir: Path,
    cwd: Path = ROOT,
    settings: dict[str, str] | None = None,
) -> Iterator[Service]:
    """One server of the load benchmarks serving `model_dir` with TF_THREADS, on a free port:
    "baseline" (bench/baseline_server.py), "ours, no batching" or "ours" (from the code in `cwd`,
    with POSTER_* `settings`)."""
    if kind == "baseline":
        port = free_port()
        argv = [sys.executable, "-m", "uvicorn", "bench.baseline_server:app", "--port", str(port)]
        argv += ["--workers", "1", "--log-level", "warning", "--no-access-log"]
        env = {**TF_THREADS, **(settings or {}), "BASELINE_MODEL_DIR": str(model_dir)}
        with running(argv, port, env, cwd=cwd, quiet=True) as service:
            yield service
        return
    ours = {
        **TF_THREADS,
        **(settings or {}),
        "POSTER_MODEL_STORE": str(model_dir.parent.parent),
        "POSTER_MODEL_NAME": model_dir.parent.name,
        "POSTER_MODEL_VERSION": model_dir.name,
    }
    if kind == "ours, no batching":
        ours["POSTER_MAX_BATCH_SIZE"] = "1"
    with app_service(ours, cwd=cwd, quiet=True) as service:
        yield service


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


# --- Load and what it measures -------------------------------------------------------------------


async def drive(
    url: str,
    posters: list[bytes],
    concurrency: int,
    duration_s: float,
    row: Row,
    per_request: int = 0,
) -> None:
    """Closed loop: `concurrency` clients, each posting its next request when answered (the lean
    client of bench/loadclient.py, so the client's CPU takes little from the server's cores);
    `per_request` posters a request for /predict/batch and the protocol's infer."""
    await loadclient.drive(url, posters, concurrency, duration_s, row, per_request)


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
        self.pid, self.peak = pid, 0.0
        self.series: list[tuple[float, float]] = []  # (monotonic time, MB)
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


def percentiles(latencies: list[float]) -> str:
    """A health poller's latencies in a few words: polls, p50, p99, failures."""
    if not latencies:
        return "no polls"
    failed = sum(1 for x in latencies if x == float("inf"))
    ok = [x for x in latencies if x != float("inf")]
    p50, p99 = (np.percentile(ok, q) * 1000 for q in (50, 99)) if ok else (float("nan"),) * 2
    return f"{len(latencies)} polls, p50 {p50:.1f} ms, p99 {p99:.1f} ms, {failed} failed"


def stage_sums(port: int) -> dict[str, tuple[float, float]]:
    """(sum of seconds, count) of each of the service's stages so far, from its /metrics."""
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
    """One server (see `server`), a warm-up then one row per concurrency level; prints each row."""
    rows = []
    with server(kind, model_dir, cwd, settings) as service:
        url = f"{service.url}/predict"
        for concurrency in levels:
            warm = Row(arch, kind, concurrency, 1.0)
            asyncio.run(drive(url, posters, concurrency, min(3.0, duration_s), warm))
            row = Row(arch, kind, concurrency, duration_s)
            before = stage_sums(service.port) if kind != "baseline" else {}
            cpu = time.process_time()
            server_stat = Path(f"/proc/{service.process.pid}/stat")
            server_cpu = stat_cpu_s(server_stat)
            with RssSampler(service.process.pid) as sampler:
                asyncio.run(drive(url, posters, concurrency, duration_s, row))
            row.client_cpu_s = time.process_time() - cpu
            row.server_cpu_s = stat_cpu_s(server_stat) - server_cpu
            row.peak_rss_mb = sampler.peak
            if before:
                after = stage_sums(service.port)
                for stage in STAGES:
                    n = after[stage][1] - before[stage][1]
                    row.stages_ms[stage] = (
                        (after[stage][0] - before[stage][0]) / n * 1000 if n else 0
                    )
            print(row.line(), flush=True)
            rows.append(row)
    return rows


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


# --- The machine ---------------------------------------------------------------------------------


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
