"""The real process: `python -m app` starts, serves, and on SIGTERM drains in-flight work and exits."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.conftest import poster_bytes

PROJECT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_ready(url: str, process: subprocess.Popen[str], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"server exited early: {process.stderr.read()}")  # type: ignore[union-attr]
        try:
            if httpx.get(f"{url}/health/ready", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    raise AssertionError("server never became ready")


def test_sigterm_finishes_in_flight_requests_then_exits(tiny_store: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "POSTER_MODEL_STORE": str(tiny_store),
        "POSTER_HOST": "127.0.0.1",
        "POSTER_PORT": str(port),
        "POSTER_MAX_BATCH_SIZE": "8",
        # A long batching wait keeps requests in flight long enough to signal during them.
        "POSTER_MAX_BATCH_WAIT_MS": "1500",
        "POSTER_SHUTDOWN_GRACE_S": "10",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "app"], cwd=PROJECT, env=env, stderr=subprocess.PIPE, text=True
    )
    try:
        wait_ready(url, process)
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
        # uvicorn re-raises the signal once it has shut down, so the status says 'terminated'.
        assert process.wait(timeout=15) in (0, -signal.SIGTERM)
        assert time.monotonic() - signalled < 10
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        process.stderr.close()  # type: ignore[union-attr]
