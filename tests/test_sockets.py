"""Points about connections, checked with raw sockets against a real `python -m app` process."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import pytest

from tests.service_process import running_service

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def small_limit_service(tiny_store: Path) -> Iterator[tuple[str, int]]:
    with running_service(tiny_store, {"POSTER_MAX_UPLOAD_BYTES": "4096"}) as service:
        address = urlparse(service.url)
        yield address.hostname or "127.0.0.1", address.port or 80


def read_until_closed(sock: socket.socket, limit_s: float = 10.0) -> bytes:
    sock.settimeout(limit_s)
    received = b""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        chunk = sock.recv(65536)
        if not chunk:
            return received
        received += chunk
    raise AssertionError(f"the server kept the connection open: {received[:200]!r}")


def test_a_chunked_upload_over_the_limit_gets_413_and_the_connection_closed(
    small_limit_service: tuple[str, int],
) -> None:
    with socket.create_connection(small_limit_service, timeout=10) as sock:
        sock.sendall(
            b"POST /predict HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n"
            b"Content-Type: multipart/form-data; boundary=b\r\n\r\n"
        )
        chunk = b"x" * 3000
        try:
            for _ in range(4):  # 12,000 bytes, never finished: the server must not wait for more
                sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        except (BrokenPipeError, ConnectionResetError):
            pass
        answer = read_until_closed(sock)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413 ")
    assert b"connection: close" in head.lower()
    assert b'"code":"payload_too_large"' in body


@pytest.fixture(scope="module")
def keyed_service(tiny_store: Path) -> Iterator[tuple[str, int]]:
    with running_service(tiny_store, {"POSTER_API_KEY": "sixteen-chars-key!"}) as service:
        address = urlparse(service.url)
        yield address.hostname or "127.0.0.1", address.port or 80


@pytest.mark.parametrize("path", ["/predict", "/predict/batch"])
def test_an_anonymous_upload_is_refused_before_its_body_is_read(
    keyed_service: tuple[str, int], path: str
) -> None:
    with socket.create_connection(keyed_service, timeout=10) as sock:
        # Headers promising 60 MB, and not one byte of it: the answer must not wait for the body.
        sock.sendall(
            f"POST {path} HTTP/1.1\r\nHost: test\r\nContent-Length: 60000000\r\n"
            "Content-Type: multipart/form-data; boundary=b\r\n\r\n".encode()
        )
        started = time.monotonic()
        answer = read_until_closed(sock)
        elapsed = time.monotonic() - started
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 401 ")
    assert b"connection: close" in head.lower()
    assert b'"code":"unauthorized"' in body
    assert elapsed < 2.0


def test_the_right_key_is_admitted(keyed_service: tuple[str, int]) -> None:
    import httpx

    from tests.conftest import poster_bytes

    host, port = keyed_service
    answer = httpx.post(
        f"http://{host}:{port}/predict",
        files={"file": ("p.jpg", poster_bytes())},
        headers={"X-API-Key": "sixteen-chars-key!"},
        timeout=30,
    )
    assert answer.status_code == 200
