"""Points about connections, checked with raw sockets against a real `python -m app` process."""

from __future__ import annotations

import contextlib
import io
import re
import select
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import httpx
import numpy as np
import pytest
from PIL import Image

from tests.conftest import poster_bytes
from tests.service_process import running_service

pytestmark = pytest.mark.slow


@contextlib.contextmanager
def serving(store: Path, env: dict[str, str]) -> Iterator[tuple[str, int]]:
    """(host, port) of a real `python -m app` process with these settings."""
    with running_service(store, env) as service:
        address = urlparse(service.url)
        yield address.hostname or "127.0.0.1", address.port or 80


@pytest.fixture(scope="module")
def small_limit_service(tiny_store: Path) -> Iterator[tuple[str, int]]:
    with serving(tiny_store, {"POSTER_MAX_UPLOAD_BYTES": "4096"}) as address:
        yield address


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
    with serving(tiny_store, {"POSTER_API_KEY": "sixteen-chars-key!"}) as address:
        yield address


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
    host, port = keyed_service
    answer = httpx.post(
        f"http://{host}:{port}/predict",
        files={"file": ("p.jpg", poster_bytes())},
        headers={"X-API-Key": "sixteen-chars-key!"},
        timeout=30,
    )
    assert answer.status_code == 200


@pytest.fixture(scope="module")
def bounded_service(tiny_store: Path) -> Iterator[tuple[str, int]]:
    env = {
        "POSTER_HEADER_TIMEOUT_S": "1.5",
        "POSTER_BODY_IDLE_TIMEOUT_S": "1.5",
        "POSTER_MAX_CONNECTIONS": "400",
    }
    with serving(tiny_store, env) as address:
        yield address


def answer_of(raw: bytes) -> tuple[bytes, bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    return head, body


def test_headers_that_never_finish_get_408_and_the_connection_closed(
    bounded_service: tuple[str, int],
) -> None:
    with socket.create_connection(bounded_service, timeout=10) as sock:
        sock.sendall(b"POST /predict HTTP/1.1\r\nHost: test\r\n")
        started = time.monotonic()
        head, body = answer_of(read_until_closed(sock))
    assert 1.2 < time.monotonic() - started < 5
    assert head.startswith(b"HTTP/1.1 408 ") and b'"code": "request_timeout"' in body


def test_a_body_that_stops_arriving_gets_408_and_the_connection_closed(
    bounded_service: tuple[str, int],
) -> None:
    with socket.create_connection(bounded_service, timeout=10) as sock:
        sock.sendall(
            b"POST /predict HTTP/1.1\r\nHost: test\r\nContent-Length: 5000\r\n"
            b"Content-Type: image/jpeg\r\n\r\n" + b"\xff\xd8" * 10
        )
        started = time.monotonic()
        head, body = answer_of(read_until_closed(sock))
    assert 1.2 < time.monotonic() - started < 5
    assert head.startswith(b"HTTP/1.1 408 ") and b"stopped arriving" in body


def test_a_body_trickled_byte_by_byte_is_cut_off_by_the_total_deadline(tiny_store: Path) -> None:
    env = {"POSTER_BODY_IDLE_TIMEOUT_S": "1", "POSTER_BODY_TIMEOUT_S": "2.5"}
    with serving(tiny_store, env) as address, socket.create_connection(address, timeout=10) as sock:
        sock.sendall(
            b"POST /predict HTTP/1.1\r\nHost: test\r\nContent-Length: 5000\r\n"
            b"Content-Type: image/jpeg\r\n\r\n"
        )
        started = time.monotonic()
        with contextlib.suppress(OSError):
            while time.monotonic() - started < 8:  # one byte every 0.5 s: never idle for 1 s
                sock.send(b"x")
                if select.select([sock], [], [], 0.5)[0]:
                    break  # the answer has begun
        answered_after = time.monotonic() - started
        head, body = answer_of(read_until_closed(sock))
    assert 2.0 < answered_after < 4
    assert head.startswith(b"HTTP/1.1 408 ") and b"took too long" in body


def test_a_stall_after_a_pipelined_request_still_meets_the_body_deadline(
    bounded_service: tuple[str, int],
) -> None:
    with socket.create_connection(bounded_service, timeout=10) as sock:
        sock.sendall(
            b"GET /health/live HTTP/1.1\r\nHost: test\r\n\r\n"
            b"POST /predict HTTP/1.1\r\nHost: test\r\nContent-Length: 100000\r\n"
            b"Content-Type: image/jpeg\r\n\r\n" + b"\xff" * 100
        )
        started = time.monotonic()
        answer = read_until_closed(sock)
    assert time.monotonic() - started < 5
    assert answer.startswith(b"HTTP/1.1 200 ") and b"HTTP/1.1 408 " in answer


def test_a_stall_on_a_kept_alive_connection_gets_a_408(bounded_service: tuple[str, int]) -> None:
    with socket.create_connection(bounded_service, timeout=10) as sock:
        sock.sendall(b"GET /health/live HTTP/1.1\r\nHost: test\r\n\r\n")
        first = b""
        while b'"alive"}' not in first:
            first += sock.recv(65536)
        assert first.startswith(b"HTTP/1.1 200 ")
        sock.sendall(b"GET / HTTP/1.1\r\n")
        head, body = answer_of(read_until_closed(sock))
    assert head.startswith(b"HTTP/1.1 408 ") and b"headers took too long" in body


@pytest.mark.parametrize("pieces", [1, 40])
def test_headers_over_the_size_limit_get_431(bounded_service: tuple[str, int], pieces: int) -> None:
    request = b"GET /health HTTP/1.1\r\nHost: test\r\nX-Padding: " + b"a" * 20_000 + b"\r\n\r\n"
    step = len(request) // pieces + 1
    with socket.create_connection(bounded_service, timeout=10) as sock:
        with contextlib.suppress(OSError):  # the server may close before the last piece
            for start in range(0, len(request), step):
                sock.sendall(request[start : start + step])
        head, body = answer_of(read_until_closed(sock))
    assert head.startswith(b"HTTP/1.1 431 ") and b'"code": "headers_too_large"' in body


def test_headers_under_the_limit_are_served(bounded_service: tuple[str, int]) -> None:
    with socket.create_connection(bounded_service, timeout=10) as sock:
        sock.sendall(
            b"GET /health HTTP/1.1\r\nHost: test\r\nX-Padding: " + b"a" * 8_000 + b"\r\n\r\n"
        )
        head, _ = answer_of(sock.recv(65536))
    assert head.startswith(b"HTTP/1.1 200 ")


def test_a_slowloris_of_300_connections_leaves_health_and_predict_serving(
    bounded_service: tuple[str, int],
) -> None:
    import httpx

    host, port = bounded_service
    attackers = []
    for _ in range(300):
        sock = socket.create_connection(bounded_service, timeout=5)
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: test\r\n")
        attackers.append(sock)
    latencies = []
    try:
        with httpx.Client(base_url=f"http://{host}:{port}", timeout=5) as client:
            deadline = time.monotonic() + 3.0
            while time.monotonic() < deadline:
                for sock in attackers:  # a trickle of header bytes, never the end of them
                    with contextlib.suppress(OSError):
                        sock.send(b"X-a: b\r\n")
                started = time.monotonic()
                assert client.get("/health").status_code == 200
                latencies.append(time.monotonic() - started)
                time.sleep(0.05)
            files = {"file": ("p.jpg", poster_bytes())}
            assert client.post("/predict", files=files).status_code == 200
        closed = 0
        for sock in attackers:  # by now the header deadline has cut every one of them off
            sock.settimeout(5)
            try:
                data = sock.recv(65536)
                closed += data.startswith(b"HTTP/1.1 408") or data == b""
            except OSError:
                closed += 1
        assert closed == 300
    finally:
        for sock in attackers:
            sock.close()
    latencies.sort()
    assert latencies[int(len(latencies) * 0.99) - 1] < 0.5


def test_connections_over_the_cap_get_503_at_once(tiny_store: Path) -> None:
    env = {"POSTER_MAX_CONNECTIONS": "8", "POSTER_HEADER_TIMEOUT_S": "20"}
    with serving(tiny_store, env) as target:
        held = [socket.create_connection(target, timeout=5) for _ in range(8)]
        try:
            time.sleep(0.3)
            with socket.create_connection(target, timeout=5) as extra:
                head, body = answer_of(read_until_closed(extra, 5))
            assert head.startswith(b"HTTP/1.1 503 ") and b'"code": "overloaded"' in body
        finally:
            for sock in held:
                sock.close()


def test_refusals_over_the_cap_do_not_hold_descriptors_beyond_a_small_budget(
    tiny_store: Path,
) -> None:
    env = {"POSTER_MAX_CONNECTIONS": "8", "POSTER_HEADER_TIMEOUT_S": "20"}
    with running_service(tiny_store, env) as service:
        target = ("127.0.0.1", service.port)
        descriptors = Path(f"/proc/{service.process.pid}/fd")
        held = [socket.create_connection(target, timeout=5) for _ in range(8)]
        extra: list[socket.socket] = []
        try:
            time.sleep(0.3)
            before = len(list(descriptors.iterdir()))
            extra = [socket.create_connection(target, timeout=5) for _ in range(40)]
            time.sleep(0.3)
            during = len(list(descriptors.iterdir()))
            answers = [answer_of(read_until_closed(sock, 5))[0][:13] for sock in extra]
        finally:
            for sock in held + extra:
                sock.close()
    assert during - before <= 1 + 2  # the budget is 8 // 8 = 1 lingering refusal (+ slack)
    assert answers == [b"HTTP/1.1 503 "] * 40


def test_a_client_that_never_reads_its_answer_is_cut_off(bounded_service: tuple[str, int]) -> None:
    request = b"GET /docs-assets/swagger-ui-bundle.js HTTP/1.1\r\nHost: test\r\n\r\n"
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        sock.settimeout(10)
        sock.connect(bounded_service)
        sock.sendall(request * 10)  # ~15 MB of answers, none of it read for 4 s
        time.sleep(4)  # > POSTER_BODY_IDLE_TIMEOUT_S = 1.5
        received = 0
        with contextlib.suppress(ConnectionResetError):
            while chunk := sock.recv(65536):
                received += len(chunk)
    assert received < 8_000_000, received  # what kernel buffers held, not the 15 MB asked for


def test_a_client_still_sending_after_a_431_reads_the_answer(
    bounded_service: tuple[str, int],
) -> None:
    """Closing a socket with unread bytes makes the kernel send a reset, which can destroy the
    answer before the client reads it: the server must stop writing, drain, then close."""
    with socket.create_connection(bounded_service, timeout=10) as sock:
        with contextlib.suppress(OSError):  # a reset here is what this test is about
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: test\r\nX-Padding: " + b"a" * 2_000_000)
        head, body = answer_of(read_until_closed(sock))
    assert head.startswith(b"HTTP/1.1 431 ") and b'"code": "headers_too_large"' in body


def test_a_client_still_uploading_after_a_413_reads_the_answer(
    small_limit_service: tuple[str, int],
) -> None:
    with socket.create_connection(small_limit_service, timeout=10) as sock:
        with contextlib.suppress(OSError):  # refused from the headers while the body keeps coming
            sock.sendall(
                b"POST /predict HTTP/1.1\r\nHost: test\r\nContent-Length: 2000000\r\n"
                b"Content-Type: image/jpeg\r\n\r\n" + b"\xff" * 2_000_000
            )
        head, body = answer_of(read_until_closed(sock))
    assert head.startswith(b"HTTP/1.1 413 ") and b'"code":"payload_too_large"' in body


SMUGGLED = (
    b"POST /health/live HTTP/1.1\r\nHost: test\r\nContent-Length: 44\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /health/live HTTP/1.1\r\nHost: test\r\n\r\n"
)
FOLDED = b"GET /health/live HTTP/1.1\r\nHost: test\r\nTransfer-Encoding:\r\n chunked\r\n\r\n"


@pytest.mark.parametrize(
    ("request_bytes", "message"),
    [(SMUGGLED, b"Content-Length with Transfer-Encoding"), (FOLDED, b"folded")],
    ids=["content-length-and-transfer-encoding", "obs-fold"],
)
def test_ambiguous_framing_gets_400_and_the_connection_closed(
    bounded_service: tuple[str, int], request_bytes: bytes, message: bytes
) -> None:
    """RFC 9112 §6.3: a message with both Content-Length and Transfer-Encoding is an error, and
    the connection must close; h11 alone answered the request hidden in the body too."""
    with socket.create_connection(bounded_service, timeout=10) as sock:
        sock.sendall(request_bytes)
        raw = read_until_closed(sock)
    head, body = answer_of(raw)
    assert head.startswith(b"HTTP/1.1 400 ") and b'"code": "bad_request"' in body
    assert message in body
    assert len(re.findall(rb"HTTP/1\.1 \d{3} ", raw)) == 1  # nothing hidden behind it answered


def test_ambiguous_framing_pipelined_behind_a_good_request_is_refused_after_it(
    bounded_service: tuple[str, int],
) -> None:
    good = b"GET /health/live HTTP/1.1\r\nHost: test\r\n\r\n"
    with socket.create_connection(bounded_service, timeout=10) as sock:
        sock.sendall(good + SMUGGLED)
        raw = read_until_closed(sock)
    assert re.findall(rb"HTTP/1\.1 (\d{3}) ", raw) == [b"200", b"400"]


def test_chunk_counting_jumps_over_data_and_flags_tiny_chunks() -> None:
    from app.connections import ChunkCount

    count = ChunkCount()
    body = (
        b"".join(f"{n:x}\r\n".encode() + b"x" * n + b"\r\n" for n in (1000, 4096, 300))
        + b"0\r\n\r\n"
    )
    for start in range(0, len(body), 7):  # split anywhere, even inside a size line
        count.feed(body[start : start + 7])
    assert count.chunks == 3 and not count.pathological
    tiny = ChunkCount()
    tiny.feed(b"1\r\nA\r\n" * 20000)
    assert tiny.pathological and tiny.chunks == 17  # it stops counting once refused


def test_a_body_of_tiny_chunks_is_refused_before_it_is_parsed(
    small_limit_service: tuple[str, int],
) -> None:
    head = b"GET /health/live HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n"
    with socket.create_connection(small_limit_service, timeout=10) as sock:
        sock.sendall(head + b"1\r\nA\r\n" * 20000)
        head_out, body = answer_of(read_until_closed(sock))
    assert head_out.startswith(b"HTTP/1.1 400 ") and b"too many chunks" in body


def test_a_body_nobody_reads_is_not_read_after_the_answer(
    small_limit_service: tuple[str, int],
) -> None:
    """A route that never reads its body answers; the connection then closes (lingering) instead
    of parsing whatever follows until the body deadline (30 s here)."""
    head = b"GET /health/live HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n"
    with socket.create_connection(small_limit_service, timeout=10) as sock:
        sock.sendall(head + b"400\r\n" + b"x" * 1024 + b"\r\n")  # and no last chunk
        started = time.monotonic()
        answer = read_until_closed(sock, limit_s=5)
    assert answer.startswith(b"HTTP/1.1 200 ") and time.monotonic() - started < 3


def test_a_chunked_upload_in_real_sized_chunks_is_served(
    small_limit_service: tuple[str, int],
) -> None:

    poster = poster_bytes()
    chunks = b"".join(
        f"{len(poster[i : i + 300]):x}\r\n".encode() + poster[i : i + 300] + b"\r\n"
        for i in range(0, len(poster), 300)
    )
    request = (
        b"POST /predict HTTP/1.1\r\nHost: test\r\nContent-Type: image/jpeg\r\n"
        b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n" + chunks + b"0\r\n\r\n"
    )
    with socket.create_connection(small_limit_service, timeout=10) as sock:
        sock.sendall(request)
        head, body = answer_of(read_until_closed(sock, limit_s=30))
    assert head.startswith(b"HTTP/1.1 200 "), head + body[:300]
    assert b'"predicted"' in body


def test_metrics_move_to_their_own_port_without_the_key(tiny_store: Path) -> None:
    """POSTER_METRICS_PORT: the scraper needs no key there, and the public port has no /metrics."""
    from tests.service_process import free_port

    metrics_port = free_port()
    key = "sixteen-chars-key!"
    env = {"POSTER_API_KEY": key, "POSTER_METRICS_PORT": str(metrics_port)}
    with running_service(tiny_store, env) as service:
        public = httpx.get(f"{service.url}/metrics", headers={"X-API-Key": key})
        assert public.status_code == 404
        assert httpx.get(f"{service.url}/model").status_code == 401
        assert httpx.get(f"{service.url}/model", headers={"X-API-Key": key}).status_code == 200
        scraped = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics")
        assert scraped.status_code == 200
        assert scraped.headers["content-type"].startswith("text/plain")
        assert "poster_ready{" in scraped.text or "poster_ready " in scraped.text
        other = httpx.get(f"http://127.0.0.1:{metrics_port}/model")
        assert other.status_code == 404 and other.json()["error"]["code"] == "not_found"
        assert httpx.post(f"http://127.0.0.1:{metrics_port}/metrics").status_code == 405
        assert "/metrics" not in httpx.get(f"{service.url}/openapi.json").json()["paths"]


@pytest.fixture(scope="module")
def budgeted_service(tiny_store: Path) -> Iterator[tuple[str, int]]:
    """Bodies of up to 1 MiB, 4 MiB in flight together: two stalled full uploads fill it."""
    env = {
        "POSTER_MAX_UPLOAD_BYTES": str(1 << 20),
        "POSTER_MAX_BATCH_UPLOAD_BYTES": str(1 << 20),
        "POSTER_MAX_INFLIGHT_BODY_MB": "4",
        "POSTER_MAX_QUEUE": "8",
        "POSTER_MAX_BATCH_FILES": "4",
        "POSTER_BODY_IDLE_TIMEOUT_S": "20",
    }
    with serving(tiny_store, env) as address:
        yield address


def stalled_upload(
    address: tuple[str, int], path: str = "/predict", size: int = 1 << 20
) -> socket.socket:
    """A connection that declared a `size`-byte multipart body, sent its first part's head and
    1 KiB of the file, and stalls."""
    field = "files" if path.endswith("batch") else "file"
    part = f'--b\r\nContent-Disposition: form-data; name="{field}"; filename="p.jpg"\r\n\r\n'
    sock = socket.create_connection(address, timeout=10)
    sock.sendall(
        f"POST {path} HTTP/1.1\r\nHost: t\r\nContent-Length: {size}\r\n"
        "Content-Type: multipart/form-data; boundary=b\r\n\r\n".encode()
        + part.encode()
        + b"x" * 1024
    )
    return sock


def test_bodies_in_flight_share_one_budget_decided_from_content_length(
    budgeted_service: tuple[str, int],
) -> None:
    """Memory for bodies was bounded only by connections x upload size: stalled uploads
    OOM-killed the container. Past the budget, 503 before a byte of the body is read."""
    host, port = budgeted_service
    stalled = [stalled_upload(budgeted_service) for _ in range(2)]
    try:
        time.sleep(0.3)
        with stalled_upload(budgeted_service) as third:
            head, body = answer_of(read_until_closed(third))
        assert head.startswith(b"HTTP/1.1 503 ")
        assert b"retry-after: 1" in head.lower() and b"connection: close" in head.lower()
        assert b'"code":"overloaded"' in body and b"Too many uploads" in body
        small = httpx.post(  # 2 x 2 MiB charged is the whole budget: no room for any body
            f"http://{host}:{port}/predict", files={"file": ("p.jpg", poster_bytes())}
        )
        assert small.status_code == 503
    finally:
        for sock in stalled:
            sock.close()
    time.sleep(0.5)
    served = httpx.post(f"http://{host}:{port}/predict", files={"file": ("p.jpg", poster_bytes())})
    assert served.status_code == 200  # what the stalled uploads held is free again


def test_a_chunked_body_is_charged_as_its_bytes_arrive(budgeted_service: tuple[str, int]) -> None:
    stalled = [stalled_upload(budgeted_service) for _ in range(2)]
    try:
        time.sleep(0.3)
        with socket.create_connection(budgeted_service, timeout=10) as sock:
            sock.sendall(
                b"POST /predict HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n"
                b"Content-Type: multipart/form-data; boundary=b\r\n\r\n"
            )
            chunk = b"x" * 4096
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                for _ in range(64):
                    sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            head, body = answer_of(read_until_closed(sock))
        assert head.startswith(b"HTTP/1.1 503 ") and b'"code":"overloaded"' in body
    finally:
        for sock in stalled:
            sock.close()


def test_a_batch_is_refused_from_its_headers_when_its_places_are_taken(
    budgeted_service: tuple[str, int],
) -> None:
    """A batch holds POSTER_MAX_BATCH_FILES queue places from its headers: a second one is
    refused before its body is read, not after uploading all of it."""
    with stalled_upload(budgeted_service, "/predict/batch", size=5000):
        time.sleep(0.3)
        with socket.create_connection(budgeted_service, timeout=10) as sock:
            sock.sendall(
                b"POST /predict/batch HTTP/1.1\r\nHost: t\r\nContent-Length: 500000\r\n"
                b"Content-Type: multipart/form-data; boundary=b\r\n\r\n"
            )
            started = time.monotonic()
            head, body = answer_of(read_until_closed(sock))
            assert time.monotonic() - started < 2
        assert head.startswith(b"HTTP/1.1 503 ") and b"batch images" in body


def test_large_multipart_files_are_never_spooled_to_disk(tiny_store: Path) -> None:
    """A full /tmp turned multipart uploads over 1 MiB into 400s: the server's fault blamed on
    the client. Files now stay in memory, charged to the body budget."""
    noise = np.random.default_rng(0).integers(0, 256, (1500, 1000, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(noise).save(buffer, "JPEG", quality=95)
    big = buffer.getvalue()
    assert len(big) > 1 << 20  # over Starlette's 1 MiB spool threshold
    # No file of the server's may pass 1 MiB (RLIMIT_FSIZE; Python turns the signal into
    # EFBIG): a spooled upload fails as it would on a full /tmp.
    no_big_files = ["prlimit", f"--fsize={1 << 20}", "--"]
    with running_service(tiny_store, prefix=no_big_files) as service:
        answer = httpx.post(f"{service.url}/predict", files={"file": ("p.jpg", big)}, timeout=30)
        assert answer.status_code == 200, answer.text


def test_refusals_the_connection_layer_makes_are_counted_by_code(tiny_store: Path) -> None:
    """They never reach a route, so the request metrics did not see them."""
    env = {"POSTER_MAX_HEADER_BYTES": "2048"}
    with running_service(tiny_store, env) as service:
        address = ("127.0.0.1", service.port)
        smuggling = (
            b"POST /predict HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
        )
        huge = b"GET / HTTP/1.1\r\nHost: t\r\nX-Big: " + b"a" * 4096 + b"\r\n\r\n"
        for request, status in ((smuggling, b"400"), (smuggling, b"400"), (huge, b"431")):
            with socket.create_connection(address, timeout=10) as sock:
                sock.sendall(request)
                assert read_until_closed(sock).startswith(b"HTTP/1.1 " + status)
        metrics = httpx.get(f"{service.url}/metrics").text
    assert 'poster_connection_refusals_total{code="bad_request"} 2.0' in metrics
    assert 'poster_connection_refusals_total{code="headers_too_large"} 1.0' in metrics
    assert 'poster_connection_refusals_total{code="request_timeout"} 0.0' in metrics
