"""Sizes in the units people read: 10 MiB, not 10485760 bytes."""

from __future__ import annotations


def human_bytes(n: int) -> str:
    """1536 -> '1.5 KiB', 10485760 -> '10 MiB', 512 -> '512 bytes'."""
    value = float(n)
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            if unit == "bytes":
                return f"{n} bytes"
            return f"{value:.1f}".removesuffix(".0") + f" {unit}"
        value /= 1024
    raise AssertionError("unreachable")
