"""A lean closed-loop HTTP/1.1 load client: keep-alive connections on asyncio streams, one multipart
upload per request, the body built once per poster.

The client shares the server's two cores, so its own CPU is taken from the server: httpx spent
~1.7 ms of CPU per request here, this client ~0.3 ms (bench/PROFILE.md), so what the benchmarks
measure is the server, not the client. Only loopback addresses are ever targeted (bench.run).
"""

from __future__ import annotations

import asyncio
import json
import struct
import time
import uuid
from typing import Protocol
from urllib.parse import urlsplit

TIMEOUT_S = 30.0


class Tally(Protocol):
    """What a run records (bench.run.Row)."""

    latencies: list[float]
    statuses: dict[int, int]
    timeouts: int
    connection_errors: int


def multipart(poster: bytes, field: str = "file") -> tuple[bytes, str]:
    """(body, content type) of a form upload of one poster."""
    boundary = uuid.uuid4().hex
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; filename="p.jpg"\r\n'
            "Content-Type: image/jpeg\r\n\r\n"
        ).encode()
        + poster
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return body, f"multipart/form-data; boundary={boundary}"


def multipart_batch(posters: list[bytes]) -> tuple[bytes, str]:
    """(body, content type) of a form upload of several posters, field `files`."""
    boundary = uuid.uuid4().hex
    parts = [
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="p{i}.jpg"'
            "\r\nContent-Type: image/jpeg\r\n\r\n"
        ).encode()
        + poster
        + b"\r\n"
        for i, poster in enumerate(posters)
    ]
    return b"".join(
        parts
    ) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def infer_binary(posters: list[bytes]) -> tuple[bytes, dict[str, str]]:
    """(body, headers) of an Open Inference Protocol infer request carrying the posters as
    binary tensor data, outputs asked for as binary: what tritonclient sends by default."""
    blob = b"".join(struct.pack("<I", len(p)) + p for p in posters)
    image = {
        "name": "image",
        "shape": [len(posters)],
        "datatype": "BYTES",
        "parameters": {"binary_data_size": len(blob)},
    }
    header = json.dumps({"inputs": [image], "parameters": {"binary_data_output": True}}).encode()
    return header + blob, {"Inference-Header-Content-Length": str(len(header))}


def _request(url: str, body: bytes, headers: dict[str, str]) -> bytes:
    parts = urlsplit(url)
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    lines = [f"POST {path} HTTP/1.1", f"Host: {parts.netloc}", f"Content-Length: {len(body)}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def requests_for(url: str, posters: list[bytes], per_request: int = 0) -> list[bytes]:
    """Complete requests (head and body): one form upload per poster; with `per_request`, a
    batch form of that many posters each (for /predict/batch), or an infer request of that many
    (for a /v2/.../infer URL)."""
    if not per_request:
        return [
            _request(url, body, {"Content-Type": kind, "Accept": "application/json"})
            for body, kind in map(multipart, posters)
        ]
    groups = [
        [posters[(start + k) % len(posters)] for k in range(per_request)]
        for start in range(0, len(posters), per_request)
    ]
    if urlsplit(url).path.endswith("/infer"):
        return [_request(url, *infer_binary(group)) for group in groups]
    return [
        _request(url, body, {"Content-Type": kind}) for body, kind in map(multipart_batch, groups)
    ]


async def _exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes
) -> tuple[int, bool]:
    """Send one request, read one response; (status, whether the server keeps the connection)."""
    writer.write(request)
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    length, keep = 0, True
    for line in lines[1:]:
        name, _, value = line.partition(":")
        name = name.strip().lower()
        if name == "content-length":
            length = int(value)
        elif name == "connection" and value.strip().lower() == "close":
            keep = False
    await reader.readexactly(length)
    return status, keep


async def drive(
    url: str,
    posters: list[bytes],
    concurrency: int,
    duration_s: float,
    row: Tally,
    per_request: int = 0,
) -> None:
    """Closed loop: `concurrency` clients, each posting its next request when answered (one
    poster each, or `per_request` posters: see `requests_for`)."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    requests = requests_for(url, posters, per_request)
    end = time.monotonic() + duration_s

    async def one_client(offset: int) -> None:
        i = offset
        connection: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        while time.monotonic() < end:
            request = requests[i % len(requests)]
            i += concurrency
            started = time.monotonic()
            try:
                if connection is None:
                    connection = await asyncio.wait_for(
                        asyncio.open_connection(host, port), TIMEOUT_S
                    )
                status, keep = await asyncio.wait_for(_exchange(*connection, request), TIMEOUT_S)
            except TimeoutError:
                row.timeouts += 1
                _close(connection)
                connection = None
                continue
            except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
                row.connection_errors += 1
                _close(connection)
                connection = None
                await asyncio.sleep(0.05)
                continue
            row.statuses[status] = row.statuses.get(status, 0) + 1
            if status == 200:
                row.latencies.append(time.monotonic() - started)
            if not keep:
                _close(connection)
                connection = None
        _close(connection)

    await asyncio.gather(*(one_client(k) for k in range(concurrency)))


def _close(connection: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None) -> None:
    if connection is not None:
        connection[1].close()
