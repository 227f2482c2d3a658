"""OS-level names for the service's threads, so `top -H`, `ps -L` and profilers can tell the event
loop, the decoders and the model thread apart (Python before 3.14 leaves every thread "python"),
and the lowest CPU priority for the thread that decodes expensive uploads."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import threading

_PR_SET_NAME = 15  # prctl(2); Linux only, names are cut to 15 bytes


def name_os_thread() -> None:
    """Give the calling thread its Python name at the OS level (no-op where unsupported)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        libc.prctl(_PR_SET_NAME, threading.current_thread().name.encode()[:15], 0, 0, 0)
    except (OSError, AttributeError):
        pass


def name_os_thread_at_lowest_priority() -> None:
    """Name the calling thread, and give it nice 19: on Linux, priority is per thread, and
    lowering one's own needs no privilege. Anything else that wants the CPU goes first."""
    name_os_thread()
    with contextlib.suppress(OSError, AttributeError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
