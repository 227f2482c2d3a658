"""Attack figures: what a hostile client can do to a running service (loopback only, bounded).

    .venv/bin/python -m bench.attack          # writes the "Attacks" section of bench/SURVIVAL.md
    .venv/bin/python -m bench.attack --flood-against REV   # and the flood on commit REV, same run

Starts `python -m app` with the shipped model and an API key, then, one after another:
1. a slowloris: 300 connections trickling header bytes for 20 s;
2. anonymous uploads: 30 clients announcing 63.9 MiB to /predict/batch without a key;
3. a body flood: 16 anonymous clients that never stop uploading whatever they are told, each
   reconnecting as soon as its connection ends, for 15 s (the service drains a refused upload for
   at most 2 s before closing, so its answer is not lost to a reset: this is what that costs);
4. decode amplification: small files that decode large (16-bit, RGBA and palette 4000x4000
   PNGs, a progressive 16 MP JPEG, a 16,000,000x1 strip), one at a time;
while polling /health from its own thread. Prints and records /health latency, the server's RSS
and what each attacker got. Run it while nothing else runs on the machine.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import socket
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from PIL import Image

from bench.harness import (
    API_KEY,
    ROOT,
    RssSampler,
    attack_target,
    checkout_of,
    health_poller,
    load_posters,
    machine,
    percentiles,
    rss_mb,
    stat_cpu_s,
)

SECTION = "## Attacks"


def ended(sock: socket.socket) -> str:
    sock.settimeout(0.5)
    try:
        data = sock.recv(64)
    except OSError:
        return "reset"
    if not data:
        return "closed"
    return data[:12].decode(errors="replace").replace("HTTP/1.1 ", "")


def keep_predicting(
    url: str, poster: bytes, seconds: float, attack_step: Callable[[], None]
) -> Counter[int]:
    """Every 0.5 s for `seconds`: the attacker's step, then one real /predict with the key. The
    statuses of the real requests (a transport error counts as 0)."""
    statuses: Counter[int] = Counter()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        attack_step()
        try:
            answer = httpx.post(
                f"{url}/predict",
                files={"file": ("p.jpg", poster)},
                headers={"X-API-Key": API_KEY},
                timeout=10,
            )
            statuses[answer.status_code] += 1
        except httpx.HTTPError:
            statuses[0] += 1
        time.sleep(0.5)
    return statuses


def slowloris(url: str, port: int, seconds: float = 20.0) -> dict[str, object]:
    attackers = []
    for _ in range(300):
        sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        sock.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\n")
        attackers.append(sock)
    posters, _ = load_posters(limit=5)
    with health_poller(url) as latencies:

        def trickle() -> None:
            for sock in attackers:
                with contextlib.suppress(OSError):
                    sock.send(b"X-a: b\r\n")

        predicted = keep_predicting(url, posters[0], seconds, trickle)
    outcomes = Counter(ended(sock) for sock in attackers)
    for sock in attackers:
        sock.close()
    return {"health": percentiles(latencies), "predict": predicted, "attackers": outcomes}


def anonymous_uploads(url: str, port: int, pid: int) -> dict[str, object]:
    before = rss_mb(pid)
    results: list[str] = []
    started = time.monotonic()
    with RssSampler(pid) as sampler, health_poller(url) as latencies:
        socks = []
        for _ in range(30):
            sock = socket.create_connection(("127.0.0.1", port), timeout=10)
            sock.sendall(
                b"POST /predict/batch HTTP/1.1\r\nHost: x\r\nContent-Length: 67003187\r\n"
                b"Content-Type: multipart/form-data; boundary=b\r\n\r\n" + b"x" * 65536
            )
            socks.append(sock)
        for sock in socks:
            sock.settimeout(10)
            try:
                results.append(sock.recv(64)[:12].decode(errors="replace"))
            except OSError as exc:
                results.append(type(exc).__name__)
            sock.close()
    return {
        "answers": Counter(results),
        "seconds": time.monotonic() - started,
        "rss_growth_mb": sampler.peak - before,
        "health": percentiles(latencies),
    }


def body_flood(url: str, port: int, pid: int, seconds: float = 15.0) -> dict[str, object]:
    head = (
        b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000000\r\n"
        b"Content-Type: image/jpeg\r\n\r\n"
    )
    chunk = b"\xff" * 65536
    stop = threading.Event()
    lifetimes: list[float] = []
    answers: Counter[str] = Counter()
    sent = [0]

    def attacker() -> None:
        while not stop.is_set():
            opened = time.monotonic()
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
                    sock.sendall(head)
                    while not stop.is_set():
                        sock.sendall(chunk)
                        sent[0] += len(chunk)
            except OSError:
                pass
            lifetimes.append(time.monotonic() - opened)

    def probe() -> None:  # one flooding client that also reads what it was told
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            with contextlib.suppress(OSError):
                sock.sendall(head + chunk * 64)
            answers[ended(sock)] += 1

    cpu_before = stat_cpu_s(Path(f"/proc/{pid}/stat"))
    posters, _ = load_posters(limit=5)
    with health_poller(url) as latencies:
        threads = [threading.Thread(target=attacker, daemon=True) for _ in range(16)]
        for thread in threads:
            thread.start()
        predicted = keep_predicting(url, posters[0], seconds, probe)
        stop.set()
        for thread in threads:
            thread.join(timeout=10)
    return {
        "health": percentiles(latencies),
        "predict": predicted,
        "probes": answers,
        "connections": len(lifetimes),
        "median_connection_s": float(np.median(lifetimes)) if lifetimes else 0.0,
        "sent_mb": sent[0] / 2**20,
        "server_cpu_s": stat_cpu_s(Path(f"/proc/{pid}/stat")) - cpu_before,
        "seconds": seconds,
    }


def amplification_files() -> dict[str, bytes]:
    def png(image: Image.Image, **options: object) -> bytes:
        buffer = io.BytesIO()
        image.save(buffer, format="PNG", **options)
        return buffer.getvalue()

    levels = (np.arange(4000 * 4000, dtype=np.uint32) % 65536).astype(np.uint16).reshape(4000, 4000)
    jpeg = io.BytesIO()
    Image.effect_noise((4000, 4000), 40).convert("RGB").save(jpeg, "JPEG", progressive=True)
    palette = Image.new("P", (4000, 4000), 1)
    return {
        "16-bit 4000x4000 PNG": png(Image.fromarray(levels)),
        "RGBA 4000x4000 PNG": png(Image.new("RGBA", (4000, 4000), (10, 20, 30, 128))),
        "palette+transparency 4000x4000 PNG": png(palette, transparency=0),
        "progressive 16 MP JPEG": jpeg.getvalue(),
        "16,000,000x1 PNG": png(Image.new("RGB", (16_000_000, 1), (200, 10, 10))),
    }


def amplification(url: str, pid: int) -> list[tuple[str, int, int, float, float]]:
    rows = []
    with httpx.Client(timeout=60, headers={"X-API-Key": API_KEY}) as client:
        for name, data in amplification_files().items():
            time.sleep(1.0)  # let the allocator settle
            before = rss_mb(pid)
            with RssSampler(pid) as sampler:
                started = time.perf_counter()
                status = client.post(f"{url}/predict", files={"file": ("f", data)}).status_code
                elapsed = time.perf_counter() - started
            rows.append((name, len(data), status, sampler.peak - before, elapsed))
    return rows


def describe_flood(flood: dict[str, Any]) -> str:
    return (
        f"{flood['connections']} connections lasting {flood['median_connection_s']:.2f} s "
        f"(median), {flood['sent_mb']:,.0f} MiB sent; clients that read after uploading 4 MiB were "
        f"told {dict(flood['probes'])}; server CPU {flood['server_cpu_s']:.1f} s; `/health` "
        f"{flood['health']}; real `/predict` requests answered {dict(flood['predict'])}"
    )


def report(result: dict[str, Any], rows: list[tuple[str, int, int, float, float]]) -> str:
    lines = [
        SECTION,
        "",
        f"Generated by `python -m bench.attack` on {machine()}, nothing else running; the shipped "
        "model, an API key configured, default limits.",
        "",
        f"- **Slowloris**, 300 connections trickling header bytes for 20 s: `/health` "
        f"{result['slowloris']['health']}; real `/predict` requests (with the key) answered "
        f"{dict(result['slowloris']['predict'])}; the attackers' connections ended as "
        f"{dict(result['slowloris']['attackers'])}.",
        f"- **Anonymous uploads**, 30 clients announcing 63.9 MiB to `/predict/batch` without a "
        f"key: answers {dict(result['anonymous']['answers'])} within "
        f"{result['anonymous']['seconds']:.1f} s, server RSS +"
        f"{result['anonymous']['rss_growth_mb']:.0f} MB, `/health` "
        f"{result['anonymous']['health']}.",
        f"- **Body flood**, 16 anonymous clients uploading without pause and reconnecting at once, "
        f"{result['flood']['seconds']:.0f} s (each refused from the headers, then drained until "
        f"closed): {describe_flood(result['flood'])}.",
        *(
            f"  The same flood, same run, against `{revision}`: {describe_flood(flood)}."
            for revision, flood in result.get("flood_against", {}).items()
        ),
        "- **Decode amplification**, one file at a time (peak RSS growth of the server):",
        "",
        "| file | size | status | peak RSS growth | time |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, size, status, growth, elapsed in rows:
        lines.append(
            f"| {name} | {size / 1024:.0f} KiB | {status} | +{growth:.0f} MB | {elapsed:.2f} s |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.attack", description=__doc__)
    parser.add_argument("--flood-against", metavar="REV", help="also flood this earlier commit")
    args = parser.parse_args(argv)
    result: dict[str, Any] = {}
    if args.flood_against:
        with checkout_of(args.flood_against) as checkout, attack_target(cwd=checkout) as target:
            flood = body_flood(target.url, target.port, target.process.pid)
            result["flood_against"] = {args.flood_against: flood}
            print("flood against", args.flood_against, flood, flush=True)
    with attack_target() as target:
        url, port, pid = target.url, target.port, target.process.pid
        result["slowloris"] = slowloris(url, port)
        print("slowloris", result["slowloris"], flush=True)
        result["anonymous"] = anonymous_uploads(url, port, pid)
        print("anonymous", result["anonymous"], flush=True)
        result["flood"] = body_flood(url, port, pid)
        print("flood", result["flood"], flush=True)
        rows = amplification(url, pid)
        for row in rows:
            print("amplification", row, flush=True)
    text = report(result, rows)
    path = ROOT / "bench" / "SURVIVAL.md"
    existing = path.read_text() if path.exists() else "# Survival figures\n"
    kept = existing.split(SECTION)[0].rstrip() + "\n\n"
    path.write_text(kept + text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
