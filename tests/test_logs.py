"""Logging never stalls the service: checked on a real `python -m app` whose stderr nobody reads."""

from __future__ import annotations

import io
import logging
import queue
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from app.logs import DroppingQueueHandler
from devkit.ports import free_port
from tests.service_process import start_service, wait_ready


def test_a_full_queue_drops_records_and_reports_how_many() -> None:
    records: queue.Queue[logging.LogRecord | None] = queue.Queue(2)
    handler = DroppingQueueHandler(records)
    logger = logging.getLogger("test.logs.dropping")
    logger.propagate = False
    logger.addHandler(handler)
    try:
        for n in range(5):
            logger.warning("line %d", n)  # returns at once although only 2 fit
        assert handler.dropped == 3
        kept = [records.get_nowait(), records.get_nowait()]
        assert [r.getMessage() if r else None for r in kept] == ["line 0", "line 1"]
        logger.warning("line 5")
        report, line = records.get_nowait(), records.get_nowait()
    finally:
        logger.removeHandler(handler)
    assert report is not None and report.getMessage().startswith("3 log records were dropped")
    assert line is not None and line.getMessage() == "line 5"
    assert handler.dropped == 0


@pytest.mark.slow
def test_an_unread_stderr_does_not_stop_the_service(tiny_store: Path) -> None:
    port = free_port()
    # A pipe that is never read holds ~64 KB, ~300 access-log lines: far fewer than we send.
    process = start_service(tiny_store, port, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, process, io.StringIO())
        with httpx.Client(base_url=url, timeout=5) as client:
            statuses = [client.get("/health/live").status_code for _ in range(1500)]
        assert statuses == [200] * 1500
    finally:
        process.kill()
        process.wait()
        assert process.stderr is not None
        process.stderr.close()


def test_an_expected_503_logs_one_warning_line_without_a_traceback(tiny_store: Path) -> None:
    """Shedding is normal under load: each refusal is one WARNING record with its code, never an
    ERROR with a traceback (which multiplied log volume exactly when the service was busiest)."""
    from tests.conftest import poster_bytes
    from tests.service_process import running_service

    # A deadline no request can meet: every prediction is a 503 raised inside the route.
    env = {"POSTER_REQUEST_DEADLINE_S": "0.000001", "POSTER_LOG_LEVEL": "INFO"}
    with running_service(tiny_store, env) as service:
        files = {"file": ("p.jpg", poster_bytes(), "image/jpeg")}
        for _ in range(3):
            response = httpx.post(f"{service.url}/predict", files=files, timeout=30)
            assert response.status_code == 503
            assert response.json()["error"]["code"] == "deadline_exceeded"
        refusals: list[str] = []
        for _ in range(100):  # records are written by the log thread: give it a moment
            log = service.stderr()
            refusals = [line for line in log.splitlines() if "deadline_exceeded" in line]
            if len(refusals) >= 3:
                break
            time.sleep(0.05)
    assert len(refusals) == 3, log
    assert all("WARNING" in line for line in refusals), refusals
    assert "Traceback" not in log and "ERROR" not in log
