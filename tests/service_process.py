"""Start the real service process (`python -m app`) for tests that need signals, sockets or a browser."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import httpx

from devkit.ports import free_port

PROJECT = Path(__file__).resolve().parents[1]


def wait_ready(
    url: str, process: subprocess.Popen[str], log: IO[str], timeout: float = 120
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            log.seek(0)
            raise AssertionError(f"server exited early: {log.read()}")
        try:
            if httpx.get(f"{url}/health/ready", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    raise AssertionError("server never became ready")


@dataclass
class RunningService:
    url: str
    port: int
    process: subprocess.Popen[str]
    log: IO[str]  # the process's stderr so far: seek(0) and read

    def stderr(self) -> str:
        self.log.flush()
        self.log.seek(0)
        return self.log.read()


def start_service(
    store: Path,
    port: int,
    env: dict[str, str] | None = None,
    *,
    stderr: IO[str] | int,
    prefix: Sequence[str] = (),
    inherit_env: bool = True,
    module: str = "app",
) -> subprocess.Popen[str]:
    """`python -m app` (or another `module` that serves the same way) serving `store` on
    127.0.0.1:`port`, started and not waited for."""
    base = dict(os.environ) if inherit_env else {"PATH": os.environ["PATH"]}
    full_env = {
        **base,
        "POSTER_MODEL_STORE": str(store),
        "POSTER_HOST": "127.0.0.1",
        "POSTER_PORT": str(port),
        # Tests stop servers often; the ones about draining set their own delay.
        "POSTER_DRAIN_DELAY_S": "0",
        **(env or {}),
    }
    argv = [*prefix, sys.executable, "-m", module]
    return subprocess.Popen(argv, cwd=PROJECT, env=full_env, stderr=stderr, text=True)


@contextmanager
def running_service(
    store: Path,
    env: dict[str, str] | None = None,
    *,
    prefix: Sequence[str] = (),
    inherit_env: bool = True,
    module: str = "app",
) -> Iterator[RunningService]:
    """`python -m app` on a free loopback port serving `store`; stopped (and reaped) afterwards."""
    port = free_port()
    # The log goes to a file the test can read afterwards (`RunningService.stderr`).
    with tempfile.TemporaryFile("w+") as log:
        process = start_service(
            store, port, env, stderr=log, prefix=prefix, inherit_env=inherit_env, module=module
        )
        url = f"http://127.0.0.1:{port}"
        try:
            wait_ready(url, process, log)
            yield RunningService(url, port, process, log)
        finally:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
