"""Pacing the refusals of uploads that declare more decoding than allowed (scan bombs and the like).

Such an upload is refused from its header, before any decoding, yet the refusal still costs a few
milliseconds of CPU: its body through HTTP and form parsing, the answer, the log line. Four clients
re-sending a 62 KiB bomb back to back got 150 refusals a second and took 40% of the predictions'
throughput on two cores. So these refusals are answered at most `per_s` a second, after a burst: the
others wait for their turn (at most `max_wait_s`), holding only their connection and their body
(counted in the body budget). A client that re-sends what was refused waits a turn each time, and
one refusal now and then is answered at once.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class Pace:
    """Turns at `per_s` a second on a timeline that may lag `burst` turns behind the clock; used from
    the event loop only."""

    def __init__(
        self,
        per_s: float,
        burst: int = 4,
        max_wait_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._interval = 1.0 / per_s
        self._burst = burst
        self._max_wait_s = max_wait_s
        self._clock = clock
        self._next = float("-inf")

    def wait_s(self) -> float:
        """Take the next turn: how long until it comes (0.0: now)."""
        now = self._clock()
        turn = min(
            max(self._next, now - (self._burst - 1) * self._interval), now + self._max_wait_s
        )
        self._next = turn + self._interval
        return max(0.0, turn - now)
