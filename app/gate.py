"""The service's gate: its lifecycle (loading, ok, draining, failed) and the room it has for work
(images in progress, explanations, batch places). It says yes or no; it does no work itself.

The admission middleware asks it before a body is read (the cheap early refusal) and the service
asks it again for each image, with the same questions and the same answers.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Literal

from app.config import Settings
from app.errors import Overloaded, ServiceUnavailable
from app.time_share import TimeShare

Status = Literal["loading", "ok", "draining", "failed"]
BUSY = "Too many images are being processed; retry shortly."
EXPLANATIONS_FULL = (
    "Explanations are at their limit (at once, or their share of the service's time); "
    "retry shortly."
)
BATCHES_FULL = "Too many batch images are in progress; retry shortly."


class BatchPlaces:
    """The queue places one batch request holds: as many as a batch may have files, from its
    headers (before its body is read), then only as many as it has, once they are counted. A
    protocol infer request holds one from its headers and takes the rest once its posters are
    counted (`need`), so that one slow upload does not hold every batch place."""

    def __init__(
        self, give_back: Callable[[int], None], held: int, take: Callable[[int], None]
    ) -> None:
        self._give_back = give_back
        self._take = take
        self.held = held

    def need(self, n: int) -> None:
        """Hold exactly `n`: give back the extra, or take the missing ones (Overloaded when they
        are not free)."""
        if n > self.held:
            self._take(n - self.held)
            self.held = n
        self.keep(n)

    def keep(self, n: int) -> None:
        """Give back the places beyond `n`."""
        extra = max(self.held - n, 0)
        self._give_back(extra)
        self.held -= extra

    def release(self) -> None:
        self.keep(0)


class Gate:
    """Lifecycle and admission accounting. `queue_depth` and `worker_failed` come from the
    micro-batcher, which the gate only reads."""

    def __init__(
        self,
        settings: Settings,
        queue_depth: Callable[[], int],
        worker_failed: Callable[[], bool],
    ) -> None:
        self.status: Status = "loading"
        self.started = time.monotonic()
        self.admitted = 0  # images being decoded or waiting for a decode slot
        self.explaining = 0
        self._max_queue = settings.max_queue
        self._max_explanations = settings.max_explanations
        self._queue_depth = queue_depth
        self._worker_failed = worker_failed
        self._explain_time = TimeShare(settings.explain_share)
        self._batch_images = 0
        self._batch_places = int(settings.max_batch_share * settings.max_queue)

    @property
    def health(self) -> Status:
        """`failed` once the batch worker has died: no request can be answered any more."""
        return "failed" if self._worker_failed() else self.status

    @property
    def uptime_s(self) -> float:
        return time.monotonic() - self.started

    def drain(self) -> None:
        """Refuse new work from now on; in-flight requests carry on."""
        self.status = "draining"

    @property
    def saturated(self) -> bool:
        """True when a new image would be refused anyway: decoding or the model queue is full."""
        return self.admitted >= self._max_queue or self._queue_depth() >= self._max_queue

    @property
    def explanations_full(self) -> bool:
        """True when a new /explain would be refused: as many are in progress as may be, or
        explanations have taken their share of the time (POSTER_EXPLAIN_SHARE)."""
        return self.explaining >= self._max_explanations or not self._explain_time.available()

    def refusal(self, *, explains: bool = False) -> ServiceUnavailable | None:
        """Why a new image (an explanation, with `explains`) would be refused now, or None."""
        if self.health != "ok":
            return ServiceUnavailable(f"The service is {self.health}; retry on another replica.")
        if self.saturated:
            return Overloaded(BUSY)
        if explains and self.explanations_full:
            return Overloaded(EXPLANATIONS_FULL)
        return None

    def admit(self, *, explains: bool = False) -> None:
        """Raise the refusal, if there is one."""
        refusal = self.refusal(explains=explains)
        if refusal is not None:
            raise refusal

    def spend_explaining(self, seconds: float) -> None:
        """Charge an explanation's time to its share."""
        self._explain_time.spend(seconds)

    def hold_batch_places(self, n: int) -> BatchPlaces:
        """Hold `n` of the queue places batch requests share, or refuse at once: batches together
        never take more than POSTER_MAX_BATCH_SHARE of the queue, so single posters still fit."""
        self._take_batch_places(n)
        return BatchPlaces(self._give_back_batch_places, n, self._take_batch_places)

    def _take_batch_places(self, n: int) -> None:
        if self._batch_images + n > self._batch_places:
            raise Overloaded(BATCHES_FULL)
        self._batch_images += n

    def _give_back_batch_places(self, n: int) -> None:
        self._batch_images -= n
