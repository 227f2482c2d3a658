"""Keeping one kind of work to a share of the service's time (`/explain` beside `/predict`).

A concurrency cap alone does not bound it: two explanations at a time, each finished in 80 ms,
are 25 a second, and predictions fell to half their throughput beside them. So every finished
piece of work is owed for its duration, the debt is paid back at `share` seconds per second, and
new work is admitted only while the debt is under `burst_s`: over any long stretch the work takes
at most `share` of the time (plus one burst), and a person clicking through a few explanations
never waits.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class TimeShare:
    """Seconds of work owed against a share of wall time; used from the event loop only."""

    def __init__(
        self, share: float, burst_s: float = 1.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.share = share
        self.burst_s = burst_s
        self._clock = clock
        self._owed = 0.0
        self._settled_at = clock()

    def _settle(self) -> float:
        now = self._clock()
        self._owed = max(0.0, self._owed - (now - self._settled_at) * self.share)
        self._settled_at = now
        return self._owed

    def available(self) -> bool:
        """Whether new work may start now."""
        return self._settle() < self.burst_s

    def spend(self, seconds: float) -> None:
        """Record a finished piece of work's duration."""
        self._settle()
        self._owed += seconds
