"""One memory budget for the request bodies in flight, whatever their route or framing.

Per-request limits bound one upload; without a total, memory was bounded only by connections x
upload size (282 stalled 10 MiB uploads OOM-killed a 3 GiB container in 8 s). A body is charged
`BODY_COPIES` bytes per byte it has, because parsing holds a second copy (the multipart part and
the bytes read from it; the received chunks and the joined body). A declared Content-Length is
charged whole before any byte is read; a chunked body as its bytes arrive. Everything a request
was charged is released when it is answered.

Freed bodies must also leave the process: glibc raises its mmap threshold after large blocks are
freed, after which 10 MiB bodies come from the heap and stay in RSS. So the threshold is fixed
(which also stops that adjustment), and the heap is trimmed when the budget empties.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import os
from pathlib import Path

BODY_COPIES = 2
# The most any route is charged per byte: a protocol request in JSON (app/uploads.py).
MAX_BODY_COPIES = 3
MIB = 1024 * 1024
_M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter
_MMAP_THRESHOLD = 128 * 1024  # glibc's own starting value, held fixed
# After the budget empties: long enough for the answer's last references to go.
_TRIM_AFTER_S = 0.5


def _limit_files(cgroup_lines: list[str]) -> list[Path]:
    """Where this process's memory limit may be written: its own cgroup (v2, or v1's memory
    controller), and the root of the mount, which is the container's own under a cgroup
    namespace or Docker's v1 mounts."""
    files = []
    for line in cgroup_lines:
        _, controllers, path = line.strip().split(":", 2)
        if controllers == "":
            files += [Path(f"/sys/fs/cgroup{path}/memory.max"), Path("/sys/fs/cgroup/memory.max")]
        elif "memory" in controllers.split(","):
            v1 = "/sys/fs/cgroup/memory"
            files += [
                Path(f"{v1}{path}/memory.limit_in_bytes"),
                Path(f"{v1}/memory.limit_in_bytes"),
            ]
    return files


def container_memory_limit() -> int:
    """The memory this process may use: the smallest cgroup limit that applies, else the
    machine's."""
    limits = [os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")]
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        lines = []
    for limit_file in _limit_files([line for line in lines if line.count(":") >= 2]):
        try:
            text = limit_file.read_text().strip()
        except OSError:
            continue
        if text.isdigit():  # v2 says "max" when there is none, v1 a huge number
            limits.append(int(text))
    return min(limits)


def default_budget_mb(largest_body: int) -> int:
    """A quarter of the memory limit, and never less than the largest single body's charge."""
    return max(container_memory_limit() // 4, MAX_BODY_COPIES * largest_body) // MIB


def _glibc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
        libc.malloc_trim  # noqa: B018  # glibc only: musl has no malloc_trim
    except (OSError, AttributeError):
        return None
    return libc


class BodyBudget:
    """Bytes of request bodies in flight, against a capacity. Used from the event loop only."""

    def __init__(self, capacity_bytes: int) -> None:
        self.capacity = capacity_bytes
        self.charged = 0
        self._libc = _glibc()
        self._trim: asyncio.TimerHandle | None = None
        if self._libc is not None:
            self._libc.mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD)

    def try_charge(self, body_bytes: int, copies: int = BODY_COPIES) -> int | None:
        """Charge a body's `body_bytes`, `copies` times (what parsing it holds at once); the
        amount charged, or None (nothing charged) when it would not fit."""
        cost = copies * body_bytes
        if self.charged + cost > self.capacity:
            return None
        self.charged += cost
        return cost

    def release(self, cost: int) -> None:
        """Give back what `try_charge` returned; the heap is trimmed once nothing is left."""
        self.charged -= cost
        if self.charged == 0 and self._libc is not None and self._trim is None:
            self._trim = asyncio.get_running_loop().call_later(_TRIM_AFTER_S, self._trim_heap)

    def _trim_heap(self) -> None:
        self._trim = None
        if self.charged == 0 and self._libc is not None:
            self._libc.malloc_trim(0)
