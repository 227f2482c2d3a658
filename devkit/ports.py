"""Loopback ports for the servers the benchmarks, checks and tests start."""

from __future__ import annotations

import socket


def free_port() -> int:
    """A loopback port nobody listens on now: the kernel's pick, so two runs never collide."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port
