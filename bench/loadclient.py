"""A lean closed-loop HTTP/1.1 load client: keep-alive connections on asyncio streams, one multipart
upload per request, the body built once per poster.

The client shares the server's two cores, so its own CPU is taken from the server: httpx spent
~1.7 ms of CPU per request here, this client ~0.3 ms (bench/PROFILE.md), so what the benchmarks
measure is the server, not the client. Only loopback addresses are ever targeted (bench.run).
"""

from __future__ import annotations

import asyncio
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


def requests_for(url: str, posters: list[bytes]) -> list[bytes]:
    """One complete request (head and body) per poster."""
    parts = urlsplit(url)
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    built = []
    for poster in posters:
        body, kind = multipart(poster)
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {parts.netloc}\r\nContent-Type: {kind}\r\n"
            f"Content-Length: {len(body)}\r\nAccept: application/json\r\n\r\n"
        )
        built.append(head.encode() + body)
    return built


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
    url: str, posters: list[bytes], concurrency: int, duration_s: float, row: Tally
) -> None:
    """Closed loop: `concurrency` clients, each posting its next poster when answered."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    requests = requests_for(url, posters)
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
