"""The second attack set (chunked CPU burn, JPEG scan bombs, stalled uploads, batch spooling,
/explain beside /predict, keep-alive at shutdown), full size, against an earlier commit and this
checkout in one run:

    .venv/bin/python -m bench.attack_compare --before REV   # writes its section of SURVIVAL.md

Each service runs as `python -m app` with the shipped model and an API key, in a memory cgroup
limited to 3 GiB as the Kubernetes manifest's container is (cgroup v1 or v2; the run needs root).
Run it while nothing else runs on the machine.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import multiprocessing
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from PIL import Image

from bench.harness import (
    API_KEY,
    ROOT,
    RssSampler,
    Service,
    attack_target,
    checkout_of,
    health_poller,
    load_posters,
    machine,
    percentiles,
    rss_mb,
    stat_cpu_s,
)

SECTION = "## The second attack set, before and after"
READING = """
Reading it: the batch refusals are sent from the headers at once; httpx reads an answer only once
it has sent its whole body, which the server drops for its 2 s lingering close, hence 2.2 s (it
was 30 s and more: the whole upload, spooled). The scan bombs under and over the caps are refused
(422) from their header, before decoding, and those refusals are paced (POSTER_EXCESS_REFUSALS_PER_S,
2 a second after a burst of 4): 4 processes re-sending them back to back get one refusal per turn
instead of 150 a second, each of which cost HTTP and multipart parsing on the predictions' cores.
The 3264x3264 progressive JPEG is a legitimate image at the decoding-work cap, decoded at nice 19.
"""
MEMORY_LIMIT = 3 * 2**30
AUTH = {"X-API-Key": API_KEY}


def service(root: Path, settings: dict[str, str] | None = None) -> AbstractContextManager[Service]:
    """`python -m app` from `root` in a 3 GiB memory cgroup, as the Kubernetes manifest's
    container is; ready."""
    return attack_target(settings, cwd=root, memory_limit_bytes=MEMORY_LIMIT)


def closed_loop(
    url: str, make: Callable[[httpx.Client], httpx.Response], clients: int, seconds: float
) -> Counter[int]:
    """`clients` threads each sending requests back to back for `seconds`, honouring
    Retry-After; the statuses (0 for a transport error)."""
    statuses: Counter[int] = Counter()
    deadline = time.monotonic() + seconds

    def run() -> None:
        with httpx.Client(base_url=url, timeout=30) as client:
            while time.monotonic() < deadline:
                try:
                    answer = make(client)
                except httpx.HTTPError:
                    statuses[0] += 1
                    continue
                statuses[answer.status_code] += 1
                if answer.status_code == 503:
                    time.sleep(float(answer.headers.get("retry-after", "1")))

    with ThreadPoolExecutor(clients) as pool:
        for future in [pool.submit(run) for _ in range(clients)]:
            future.result()
    return statuses


def post_poster(poster: bytes) -> Callable[[httpx.Client], httpx.Response]:
    return lambda client: client.post("/predict", files={"file": ("p.jpg", poster)}, headers=AUTH)


def chunked_burn(url: str, port: int, pid: int, poster: bytes) -> dict[str, Any]:
    """20 anonymous connections sending /health/live 1-byte chunks as fast as loopback allows,
    reconnecting when closed, for 20 s; /health measured idle first, in the same run."""
    with health_poller(url) as idle:
        time.sleep(8)
    head = b"GET /health/live HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    chunks = b"1\r\nA\r\n" * 20000
    stop = threading.Event()
    connections = [0]

    def attacker() -> None:
        while not stop.is_set():
            connections[0] += 1
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", port), timeout=5) as sock,
            ):
                sock.sendall(head)
                while not stop.is_set():
                    sock.sendall(chunks)

    cpu = stat_cpu_s(Path(f"/proc/{pid}/stat"))
    threads = [threading.Thread(target=attacker, daemon=True) for _ in range(20)]
    with health_poller(url, timeout_s=3) as busy:
        for thread in threads:
            thread.start()
        predicted = closed_loop(url, post_poster(poster), 1, 20)
        stop.set()
    for thread in threads:
        thread.join(timeout=10)
    return {
        "idle": percentiles(idle),
        "busy": percentiles(busy),
        "p99_ratio": _p99(busy) / _p99(idle),
        "predict": predicted,
        "connections": connections[0],
        "server_cpu_s": stat_cpu_s(Path(f"/proc/{pid}/stat")) - cpu,
    }


def _p99(latencies: list[float]) -> float:
    if any(x == float("inf") for x in latencies) or not latencies:
        return float("inf")
    return float(np.percentile(latencies, 99))


def scan_bomb(scans: int = 20_000, side: int = 4000) -> bytes:
    """A side x side greyscale progressive JPEG (6 scans) with its last scan repeated `scans`
    times: each repeat decodes as one more pass over the whole image."""
    buffer = io.BytesIO()
    Image.new("L", (side, side), 128).save(buffer, "JPEG", progressive=True, quality=50)
    data = buffer.getvalue()
    last, end = data.rfind(b"\xff\xda"), data.rfind(b"\xff\xd9")
    return data[:end] + data[last:end] * scans + data[end:]


def bomb_for(url: str, bomb: bytes, seconds: float) -> dict[int, int]:
    """One bomb uploader (with the key), back to back for `seconds`: the statuses it got. Run in
    a process of its own, so that its client work does not take the GIL from the real clients."""
    statuses: Counter[int] = Counter()
    deadline = time.monotonic() + seconds
    with httpx.Client(base_url=url, timeout=60) as client:
        while time.monotonic() < deadline:
            try:
                files = {"file": ("b.jpg", bomb)}
                statuses[client.post("/predict", files=files, headers=AUTH).status_code] += 1
            except httpx.HTTPError:
                statuses[0] += 1
    return dict(statuses)


def scan_bombs(url: str, pid: int, poster: bytes) -> dict[str, Any]:
    """Real predictions (4 closed-loop clients, 20 s) alone, then beside 4 uploaders (separate
    processes) of a progressive JPEG at the decoding-work cap, of a bomb under the scan cap (56
    scans), and of one over it (20,000 scans)."""
    result: dict[str, Any] = {"alone": closed_loop(url, post_poster(poster), 4, 20)}
    spawn = multiprocessing.get_context("spawn")
    # 3264 x 3264 x 6 scans is just under 64 million pixel-passes: the most a JPEG may cost now.
    variants = (
        ("at_work_cap", scan_bomb(0, side=3264)),
        ("under_scan_cap", scan_bomb(50)),
        ("over_scan_cap", scan_bomb(20_000)),
    )
    for name, bomb in variants:
        with ProcessPoolExecutor(4, mp_context=spawn) as pool:
            futures = [pool.submit(bomb_for, url, bomb, 24.0) for _ in range(4)]
            time.sleep(3)  # the uploaders have started
            cpu = stat_cpu_s(Path(f"/proc/{pid}/stat"))
            beside = closed_loop(url, post_poster(poster), 4, 20)
            cpu = stat_cpu_s(Path(f"/proc/{pid}/stat")) - cpu
            bombs: Counter[int] = Counter()
            for future in futures:
                bombs.update(future.result())
        result[name] = {
            "kib": len(bomb) / 1024,
            "scans": bomb.count(b"\xff\xda"),
            "side": Image.open(io.BytesIO(bomb)).size[0],
            "beside": beside,
            "bombs": bombs,
            "kept": beside[200] / max(result["alone"][200], 1),
            "server_cpu_s": cpu,
        }
    return result


def stalled_uploads(
    url: str, port: int, process: subprocess.Popen[bytes], poster: bytes
) -> dict[str, Any]:
    """300 clients (with the key) each declare a 10 MiB raw body, send all but its last byte,
    and stall for 20 s, while real predictions go on; then they leave, and RSS is read 60 s
    later."""
    time.sleep(2)
    idle = rss_mb(process.pid)
    size = 10 * 2**20
    head = (
        f"POST /predict HTTP/1.1\r\nHost: x\r\nX-API-Key: {API_KEY}\r\nContent-Type: image/jpeg\r\n"
        f"Content-Length: {size}\r\n\r\n"
    ).encode()
    body = b"\xff" * (size - 1)
    sockets: list[socket.socket] = []
    refused = [0]
    lock = threading.Lock()

    def stall() -> None:
        try:
            sock = socket.create_connection(("127.0.0.1", port), timeout=30)
            sock.sendall(head + body)
        except OSError:
            with lock:
                refused[0] += 1
            return
        with lock:
            sockets.append(sock)

    with RssSampler(process.pid) as sampler:
        with ThreadPoolExecutor(32) as pool:
            list(pool.map(lambda _: stall(), range(300)))
        predicted = closed_loop(url, post_poster(poster), 2, 20)
        answered = Counter(_answer_of(sock) for sock in sockets)
        for sock in sockets:
            sock.close()
    alive = process.poll() is None
    time.sleep(60)
    return {
        "idle_mb": idle,
        "peak_mb": sampler.peak,
        "alive": alive,
        "exit": process.poll(),
        "predict": predicted,
        "stalled": answered,
        "send_failed": refused[0],
        "after_60s_mb": rss_mb(process.pid) if alive else 0.0,
    }


def _answer_of(sock: socket.socket) -> str:
    sock.settimeout(0.2)
    try:
        data = sock.recv(64)
    except TimeoutError:
        return "still waiting"
    except OSError:
        return "reset"
    return data[9:12].decode(errors="replace") if data else "closed"


def batch_spool(url: str, process: subprocess.Popen[bytes]) -> dict[str, Any]:
    """8 concurrent 64 MiB batches (with the key): when each got its answer, and what it was."""
    part = np.random.default_rng(0).integers(0, 255, 2 * 2**20 - 4096, dtype=np.uint8).tobytes()
    files = [("files", (f"f{i}.jpg", part)) for i in range(31)]
    outcomes: list[tuple[int, float]] = []
    before = rss_mb(process.pid)

    def send() -> None:
        started = time.monotonic()
        try:
            status = httpx.post(
                f"{url}/predict/batch", files=files, headers=AUTH, timeout=120
            ).status_code
        except httpx.HTTPError:
            status = 0
        outcomes.append((status, time.monotonic() - started))

    with RssSampler(process.pid) as sampler, ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda _: send(), range(8)))
    return {
        "statuses": Counter(s for s, _ in outcomes),
        "refusal_s": sorted(round(t, 2) for s, t in outcomes if s == 503),
        "rss_growth_mb": sampler.peak - before,
    }


def explain_beside_predict(url: str, poster: bytes) -> dict[str, Any]:
    """8 closed-loop /predict clients for 20 s alone, then beside 8 closed-loop /explain clients
    that honour Retry-After."""
    alone = closed_loop(url, post_poster(poster), 8, 20)

    def post_explain(client: httpx.Client) -> httpx.Response:
        return client.post("/explain", files={"file": ("p.jpg", poster)}, headers=AUTH)

    with ThreadPoolExecutor(1) as background:
        # The explainers run the whole time the predictions are measured.
        explaining = background.submit(closed_loop, url, post_explain, 8, 20)
        beside = closed_loop(url, post_poster(poster), 8, 20)
        explained = explaining.result()
    return {
        "alone": alone,
        "beside": beside,
        "explained": explained,
        "kept": beside[200] / max(alone[200], 1),
    }


def shutdown_race(root: Path) -> dict[str, Any]:
    """16 kept-alive clients calling /health/live back to back; SIGTERM (drain 2 s); what the
    requests sent after the signal got."""
    outcomes: Counter[str] = Counter()
    with service(root, {"POSTER_DRAIN_DELAY_S": "2"}) as target:
        url, process = target.url, target.process
        signalled = threading.Event()
        stop = threading.Event()

        def client() -> None:
            with httpx.Client(base_url=url, timeout=5) as http:
                while not stop.is_set():
                    after = signalled.is_set()
                    try:
                        status = http.get("/health/live").status_code
                        kind = str(status)
                    except httpx.ConnectError:
                        kind = "refused (listener closed)"
                    except httpx.HTTPError as exc:
                        kind = f"broken ({type(exc).__name__})"
                    if after:
                        outcomes[kind] += 1
                    time.sleep(0.01)

        threads = [threading.Thread(target=client, daemon=True) for _ in range(16)]
        for thread in threads:
            thread.start()
        time.sleep(2)
        signalled.set()
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
        time.sleep(0.5)
        stop.set()
        for thread in threads:
            thread.join(timeout=10)
    return {"after_sigterm": outcomes}


def run_all(root: Path) -> dict[str, Any]:
    posters, _ = load_posters(limit=5)
    poster = posters[0]
    result: dict[str, Any] = {}
    with service(root) as target:
        url, port, process = target.url, target.port, target.process
        result["chunked"] = chunked_burn(url, port, process.pid, poster)
        print("chunked", result["chunked"], flush=True)
        result["spool"] = batch_spool(url, process)
        print("spool", result["spool"], flush=True)
        result["explain"] = explain_beside_predict(url, poster)
        print("explain", result["explain"], flush=True)
        # Last: where a bomb is decoded, its thread cannot be stopped and would skew what follows.
        result["bombs"] = scan_bombs(url, process.pid, poster)
        print("bombs", result["bombs"], flush=True)
    with service(root) as target:
        url, port, process = target.url, target.port, target.process
        result["stalled"] = stalled_uploads(url, port, process, poster)
        print("stalled", result["stalled"], flush=True)
    result["shutdown"] = shutdown_race(root)
    print("shutdown", result["shutdown"], flush=True)
    return result


def _bomb_line(b: dict[str, Any], k: str) -> str:
    run = b[k]
    return (
        f"  - Scan bombs, 4 uploaders (processes of their own) of a {run['side']}x{run['side']} "
        f"JPEG of {run['scans']:,} scans ({run['kib']:.0f} KiB): real predictions (4 clients, 20 s) "
        f"{b['alone'][200]} alone, {run['beside'][200]} beside them ({run['kept']:.0%} kept); "
        f"the bombs got {dict(run['bombs'])}; server CPU {run['server_cpu_s']:.1f} s in those 20 s."
    )


def describe(name: str, r: dict[str, Any]) -> list[str]:
    c, b, s, e, m, d = (
        r[k] for k in ("chunked", "bombs", "spool", "explain", "stalled", "shutdown")
    )
    return [
        f"- **{name}**",
        f"  - Chunked burn, 20 anonymous connections of 1-byte chunks for 20 s: `/health` idle "
        f"{c['idle']}; under attack {c['busy']} (p99 {c['p99_ratio']:.1f}x idle); real "
        f"`/predict` {dict(c['predict'])}; server CPU {c['server_cpu_s']:.1f} s.",
        *(_bomb_line(b, k) for k in ("at_work_cap", "under_scan_cap", "over_scan_cap")),
        f"  - Eight 62 MiB batches at once: {dict(s['statuses'])}; the refusals came after "
        f"{s['refusal_s']} s; RSS +{s['rss_growth_mb']:.0f} MB.",
        f"  - `/explain` beside `/predict`, 8 closed-loop clients each, honouring Retry-After: "
        f"{e['alone'][200]} predictions alone, {e['beside'][200]} beside ({e['kept']:.0%} kept); "
        f"`/explain` got {dict(e['explained'])}.",
        f"  - 300 stalled 10 MiB uploads in a 3 GiB cgroup: idle RSS {m['idle_mb']:.0f} MB, peak "
        f"{m['peak_mb']:.0f} MB, alive {m['alive']} (exit {m['exit']}); the stalled clients got "
        f"{dict(m['stalled'])}; real `/predict` {dict(m['predict'])}; 60 s after they left: "
        f"{m['after_60s_mb']:.0f} MB.",
        f"  - Shutdown, 16 kept-alive clients, requests after SIGTERM (drain 2 s): "
        f"{dict(d['after_sigterm'])}.",
    ]


def replace_section(document: str, section: str) -> str:
    """`document` with its SECTION (up to the next "## " heading) replaced by `section`, or
    `section` appended when it has none."""
    if SECTION not in document:
        return document.rstrip() + "\n\n" + section
    before, rest = document.split(SECTION, 1)
    after = rest[rest.index("\n## ") + 1 :] if "\n## " in rest else ""
    return before + section + ("\n" + after if after else "")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.attack_compare", description=__doc__)
    parser.add_argument("--before", required=True, metavar="REV", help="the commit to compare with")
    args = parser.parse_args(argv)
    with checkout_of(args.before) as checkout:
        before = run_all(checkout)
    after = run_all(ROOT)
    head = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    lines = [
        SECTION,
        "",
        f"Generated by `python -m bench.attack_compare --before {args.before}` on {machine()}, "
        "nothing else running; the shipped model, an API key, default limits, each service in a "
        "3 GiB memory cgroup.",
        "",
        *describe(f"Before (`{args.before}`)", before),
        *describe(f"After (`{head}`)", after),
        "",
        *READING.strip().splitlines(),
    ]
    text = "\n".join(lines) + "\n"
    path = ROOT / "bench" / "SURVIVAL.md"
    path.write_text(replace_section(path.read_text(), text))
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
