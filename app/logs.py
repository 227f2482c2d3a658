"""Logging that cannot stall the service: records go through a bounded queue to one writer thread.

A write to stderr blocks when nobody reads it (a full pipe, a stuck log collector). Done on the event
loop, that stops every request. Here the event loop and the worker threads only enqueue; the
`log_writer` thread does the writing. When the queue is full, records are dropped and counted, and
the count is logged as soon as there is room again: losing log lines is better than losing service.
"""

from __future__ import annotations

import atexit
import logging
import queue
import sys
import threading
import time
from logging.handlers import QueueHandler
from typing import Any

from app.threads import name_os_thread

LINE_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"
QUEUE_RECORDS = 10_000
FLUSH_WAIT_S = 1.0


class DroppingQueueHandler(QueueHandler):
    """A `QueueHandler` that never waits: a record that finds the queue full is counted, not kept."""

    def __init__(self, records: queue.Queue[logging.LogRecord | None]) -> None:
        super().__init__(records)
        self._records = records
        self.dropped = 0  # changed only under the handler's own lock (held around `emit`)

    def enqueue(self, record: logging.LogRecord) -> None:
        try:
            if self.dropped:
                self.queue.put_nowait(self._drop_report())
                self.dropped = 0
            self.queue.put_nowait(record)
        except queue.Full:
            self.dropped += 1

    def flush(self) -> None:
        """Wait, at most FLUSH_WAIT_S, until the writer has written what is queued."""
        deadline = time.monotonic() + FLUSH_WAIT_S
        while self._records.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.005)

    def _drop_report(self) -> logging.LogRecord:
        return logging.LogRecord(
            "app.logs", logging.WARNING, __file__, 0,
            "%d log records were dropped: the log output was not being read fast enough",
            (self.dropped,), None,
        )  # fmt: skip


class _StderrWriter(logging.StreamHandler):  # type: ignore[type-arg]  # generic only in typeshed
    """Writes to whatever `sys.stderr` is now (tests swap it), not the one of the first call."""

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, _: Any) -> None:
        pass


def _write(records: queue.Queue[logging.LogRecord | None], writer: logging.Handler) -> None:
    name_os_thread()
    while (record := records.get()) is not None:
        writer.handle(record)
        records.task_done()


def _flush_at_exit(
    records: queue.Queue[logging.LogRecord | None], thread: threading.Thread
) -> None:
    try:
        records.put(None, timeout=1)  # waits only if the queue is full and stderr unread
    except queue.Full:
        return
    thread.join(timeout=5)


_installed: DroppingQueueHandler | None = None


def configure_logging(level: str) -> None:
    """Send every record (the service's and uvicorn's) through one bounded queue to stderr; the
    writer thread is flushed at exit. Calling it again only changes the level."""
    global _installed
    root = logging.getLogger()
    if _installed is None:
        records: queue.Queue[logging.LogRecord | None] = queue.Queue(QUEUE_RECORDS)
        writer = _StderrWriter()
        writer.setFormatter(logging.Formatter(LINE_FORMAT))
        thread = threading.Thread(
            target=_write, args=(records, writer), name="log_writer", daemon=True
        )
        thread.start()
        atexit.register(_flush_at_exit, records, thread)
        _installed = DroppingQueueHandler(records)
        root.addHandler(_installed)
    # TensorFlow gives its logger a stderr handler of its own when it finds none on the root:
    # its records would be written twice, once by the calling thread, which may then block.
    logging.getLogger("tensorflow").handlers.clear()
    root.setLevel(level)
    logging.getLogger("app").setLevel(level)
