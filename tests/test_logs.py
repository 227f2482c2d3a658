"""Logging never stalls the service: checked on a real `python -m app` whose stderr nobody reads."""

from __future__ import annotations

import io
import logging
import queue
import subprocess
from pathlib import Path

import httpx
import pytest

from app.logs import DroppingQueueHandler
from tests.service_process import free_port, start_service, wait_ready


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
