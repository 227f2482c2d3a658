"""One CPU budget for the whole process: every runtime, interpreter and loaded version draws on it.

The budget is the number of CPUs the process may use: its CPU affinity, capped by the container's
CPU limit (the cgroup's quota), not the host's core count. A model call takes as many threads as
its runtime uses from the budget and waits while they are taken, so two versions, or two
interpreters, never run more threads at once than there are CPUs to run them.
"""

from __future__ import annotations

import collections
import math
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")
CGROUP = Path("/sys/fs/cgroup")


def cgroup_cpu_limit(root: Path = CGROUP) -> float | None:
    """The CPU quota of this process's cgroup in CPUs (`docker run --cpus`, a Kubernetes limit),
    or None when there is none. cgroup v2's `cpu.max`, else v1's `cfs_quota_us`/`cfs_period_us`."""
    try:
        quota, period = (root / "cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        quota_us = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period_us = int((root / "cpu" / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    return quota_us / period_us if quota_us > 0 and period_us > 0 else None


def available_cpus(root: Path = CGROUP) -> int:
    """CPUs this process may use: its affinity, capped by the cgroup's quota (rounded up)."""
    cpus = len(os.sched_getaffinity(0))
    limit = cgroup_cpu_limit(root)
    return max(1, min(cpus, math.ceil(limit))) if limit else cpus


class ThreadBudget:
    """`size` threads shared by every model call in the process."""

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError("a thread budget needs at least one thread")
        self.size = size
        self._free = size
        self._changed = threading.Condition()
        self._waiting: collections.deque[object] = collections.deque()

    @contextmanager
    def threads(self, count: int) -> Iterator[None]:
        """Hold `count` threads of the budget (at most all of it) while the block runs. Callers
        are served in arrival order, so a call that needs the whole budget (an explanation) is
        never starved by smaller ones that keep some of it taken."""
        count = min(count, self.size)
        ticket = object()
        with self._changed:
            self._waiting.append(ticket)
            self._changed.wait_for(lambda: self._waiting[0] is ticket and self._free >= count)
            self._waiting.popleft()
            self._free -= count
            self._changed.notify_all()  # the next in line may fit in what is left
        try:
            yield
        finally:
            with self._changed:
                self._free += count
                self._changed.notify_all()

    def run(self, count: int, work: Callable[[], T]) -> T:
        with self.threads(count):
            return work()


_budget: ThreadBudget | None = None
_budget_lock = threading.Lock()


def process_budget(size: int | None = None) -> ThreadBudget:
    """The process's one budget, made on first use: `size` threads (the service's POSTER_THREADS),
    or by default the CPUs the process may use. Asking again for another size is an error: the
    runtimes have already sized their pools from the first."""
    global _budget
    with _budget_lock:
        if _budget is None:
            _budget = ThreadBudget(size or available_cpus())
        elif size is not None and size != _budget.size:
            raise ValueError(f"the thread budget is already {_budget.size}, not {size}")
        return _budget
