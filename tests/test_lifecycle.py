"""The real process: `python -m app` starts, serves, and on SIGTERM drains in-flight work and exits."""

from __future__ import annotations

import signal
import socket
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from devkit.ports import free_port
from tests.conftest import poster_bytes
from tests.service_process import running_service, start_service

pytestmark = pytest.mark.slow


def test_sigterm_finishes_in_flight_requests_then_exits(tiny_store: Path) -> None:
    env = {
        "POSTER_MAX_BATCH_SIZE": "8",
        # A long batching wait keeps requests in flight long enough to signal during them.
        "POSTER_MAX_BATCH_WAIT_MS": "1500",
        "POSTER_SHUTDOWN_GRACE_S": "10",
    }
    with running_service(tiny_store, env) as service:
        url, process = service.url, service.process
        with ThreadPoolExecutor(3) as pool:
            in_flight = [
                pool.submit(
                    httpx.post,
                    f"{url}/predict",
                    files={"file": ("p.jpg", poster_bytes())},
                    timeout=30,
                )
                for _ in range(3)
            ]
            time.sleep(0.5)
            signalled = time.monotonic()
            process.send_signal(signal.SIGTERM)
            time.sleep(0.3)
            with pytest.raises(httpx.ConnectError):
                httpx.get(f"{url}/health/live", timeout=2)
            assert [f.result().status_code for f in in_flight] == [200, 200, 200]
        # uvicorn re-raises the signal once it has shut down; the service's handler makes that an
        # orderly exit with 128 + 15, after the log's last lines are written.
        assert process.wait(timeout=15) == 143
        assert time.monotonic() - signalled < 10
        assert service.stderr().rstrip().endswith(f"Finished server process [{process.pid}]")


def test_readiness_turns_503_while_the_listener_stays_open_for_the_drain_delay(
    tiny_store: Path,
) -> None:
    with running_service(tiny_store, {"POSTER_DRAIN_DELAY_S": "2"}) as service:
        url, process = service.url, service.process
        process.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        ready = httpx.get(f"{url}/health/ready", timeout=2)  # a new connection: still accepted
        assert ready.status_code == 503 and ready.json()["status"] == "draining"
        assert "shutting down: readiness is 503 now" in service.stderr()  # not silent for 2 s
        refused = httpx.post(f"{url}/predict", files={"file": ("p.jpg", poster_bytes())}, timeout=5)
        assert refused.status_code == 503
        assert httpx.get(f"{url}/health/live", timeout=2).status_code == 200
        time.sleep(2.5)
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{url}/health/live", timeout=2)
        assert process.wait(timeout=15) == 143


def test_ctrl_c_stops_the_service_cleanly_without_a_traceback(tiny_store: Path) -> None:
    with running_service(tiny_store) as service:
        assert httpx.get(f"{service.url}/health/live", timeout=5).status_code == 200
        service.process.send_signal(signal.SIGINT)
        assert service.process.wait(timeout=15) == 0
        log = service.stderr()
    assert "Finished server process" in log
    assert "Traceback" not in log and "KeyboardInterrupt" not in log


def _interrupted(process: subprocess.Popen[str]) -> str:
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == 130, stderr
    assert stderr.strip().splitlines()[-1] == "interrupted (Ctrl+C)"
    assert "Traceback" not in stderr
    return stderr


def test_ctrl_c_while_loading_the_model_exits_130_without_a_traceback(tiny_store: Path) -> None:
    """Sent once the start-up says it is loading the model: under Keras, TensorFlow's import
    follows, which takes seconds on any CPU."""
    env = {"POSTER_RUNTIME": "keras"}
    process = start_service(tiny_store, free_port(), env, stderr=subprocess.PIPE)
    assert process.stderr is not None
    first = process.stderr.readline()
    assert "starting: loading" in first and "under keras" in first
    stderr = _interrupted(process)
    assert "Application startup complete" not in stderr


def test_ctrl_c_while_python_imports_the_server_exits_130_without_a_traceback(
    tiny_store: Path,
) -> None:
    """Sent before anything is logged: uvicorn and FastAPI are still being imported, outside any
    function of the service's own."""
    process = start_service(tiny_store, free_port(), stderr=subprocess.PIPE)
    time.sleep(0.15)
    assert process.poll() is None
    _interrupted(process)


def _get_live(connection: socket.socket) -> bytes:
    """One whole answer to GET /health/live on a raw connection: its head and its body."""
    connection.sendall(b"GET /health/live HTTP/1.1\r\nHost: t\r\n\r\n")
    answer = b""
    while b"\r\n\r\n" not in answer:
        answer += connection.recv(65536)
    head, body = answer.split(b"\r\n\r\n", 1)
    length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
    while len(body) < length:
        body += connection.recv(65536)
    return answer


def test_an_idle_kept_alive_connection_closed_at_shutdown_is_never_reset(tiny_store: Path) -> None:
    """uvicorn closes idle connections at shutdown. A request crossing that close used to meet a
    closed socket, and the kernel's reset; the close now lingers: the request is dropped and the
    client sees the connection end, which HTTP clients retry on."""
    with running_service(tiny_store, {"POSTER_DRAIN_DELAY_S": "0"}) as service:
        with socket.create_connection(("127.0.0.1", service.port), timeout=5) as idle:
            assert _get_live(idle).startswith(b"HTTP/1.1 200")
            service.process.send_signal(signal.SIGTERM)
            assert idle.recv(1) == b""  # the server's FIN
            idle.sendall(b"GET /health/live HTTP/1.1\r\nHost: t\r\n\r\n")  # the crossing request
            time.sleep(0.2)
            idle.sendall(b"GET /health/live HTTP/1.1\r\nHost: t\r\n\r\n")  # a reset shows here
            assert idle.recv(1) == b""
        assert service.process.wait(timeout=15) == 143
