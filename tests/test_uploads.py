"""An upload route is declared once (`app.uploads.upload_route`), and that declaration alone gives
it admission, the body limit and its OpenAPI description: proven on a route the service does not
have, with a path parameter, served by a real server process."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from app.uploads import Upload, declared_uploads
from tests.conftest import poster_bytes
from tests.dummy_upload_server import DUMMY_PATH
from tests.service_process import RunningService, running_service

KEY = "sixteen-chars-key!"


@pytest.fixture(scope="module")
def dummy_service(tiny_store: Path) -> Iterator[RunningService]:
    env = {"POSTER_API_KEY": KEY, "POSTER_MAX_UPLOAD_BYTES": "1000000"}
    with running_service(tiny_store, env, module="tests.dummy_upload_server") as service:
        yield service


def _head_only(service: RunningService, headers: str) -> tuple[bytes, float]:
    """The answer to headers promising a body that never comes, and how long it took."""
    with socket.create_connection(("127.0.0.1", service.port), timeout=10) as sock:
        sock.sendall(f"POST /dummy/shelf-3/upload HTTP/1.1\r\nHost: t\r\n{headers}\r\n".encode())
        started = time.monotonic()
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return answer, time.monotonic() - started


def test_the_services_own_upload_routes_are_declared() -> None:
    declared = {d.path: d.upload for d in declared_uploads()}
    assert declared["/predict"] == Upload()
    assert declared["/predict/batch"] == Upload(batch=True)
    assert declared["/explain"] == Upload(explains=True)


def test_a_declared_route_refuses_an_anonymous_upload_before_its_body(
    dummy_service: RunningService,
) -> None:
    answer, elapsed = _head_only(
        dummy_service, "Content-Length: 60000\r\nContent-Type: image/jpeg\r\n"
    )
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 401 "), answer[:200]
    assert b'"code":"unauthorized"' in body
    assert elapsed < 2.0


def test_a_declared_route_refuses_an_oversized_upload_from_its_content_length(
    dummy_service: RunningService,
) -> None:
    answer, elapsed = _head_only(
        dummy_service,
        f"X-API-Key: {KEY}\r\nContent-Length: 2000000\r\nContent-Type: image/jpeg\r\n",
    )
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413 "), answer[:200]
    assert b'"code":"payload_too_large"' in body
    assert b"connection: close" in head.lower()
    assert elapsed < 2.0


def test_a_declared_route_serves_and_is_described(dummy_service: RunningService) -> None:
    poster = poster_bytes()
    answer = httpx.post(
        f"{dummy_service.url}/dummy/shelf-3/upload",
        files={"file": ("p.jpg", poster)},
        headers={"X-API-Key": KEY},
        timeout=30,
    )
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"name": "shelf-3", "received": len(poster)}
    schema = httpx.get(f"{dummy_service.url}/openapi.json", timeout=30).json()
    operation = schema["paths"][DUMMY_PATH]["post"]
    body = operation["requestBody"]
    assert body["required"] is True
    form = body["content"]["multipart/form-data"]["schema"]
    assert form["required"] == ["file"] and form["properties"]["file"]["minLength"] == 1
    assert "image/jpeg" in body["content"]  # the raw body too
    assert {"401", "413", "503"} <= set(operation["responses"])
    assert not any(name.startswith("Body_dummy") for name in schema["components"]["schemas"])
