"""The micro-batcher: a bounded queue in front of one inference thread.

Requests enqueue one image each; a single worker gathers up to `max_batch` of them, runs the model off
the event loop, and hands each request its row. It waits for company (at most `max_wait_s`) only while
more images are on their way (`incoming()`, e.g. being decoded): an image alone is run at once. A full
queue answers 503 at once; an image that waited past its deadline, or whose client left, is dropped
before it costs a model call.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Generic, TypeVar

import numpy as np

from app.errors import DeadlineExceeded, InferenceFailed, Overloaded, ServiceUnavailable
from app.threads import name_os_thread

logger = logging.getLogger("app.batching")

T = TypeVar("T")


@dataclass
class _Job:
    image: np.ndarray
    deadline: float
    enqueued: float = field(default_factory=time.monotonic)
    future: asyncio.Future[BatchResult] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


@dataclass(frozen=True)
class BatchResult:
    """One image's probabilities and where its time went."""

    probabilities: np.ndarray
    queue_s: float
    inference_s: float
    batch_size: int


@dataclass(frozen=True)
class Timed(Generic[T]):
    """What `run_alone`'s work returned, the seconds it waited and the seconds it ran."""

    result: T
    queue_s: float
    run_s: float


class MicroBatcher:
    """Bounded, deadline-aware batching of single-image requests into model calls."""

    def __init__(
        self,
        infer: Callable[[np.ndarray], np.ndarray],
        *,
        max_batch: int,
        max_wait_s: float,
        max_queue: int,
        sizes: tuple[int, ...] | None = None,
        on_batch: Callable[[int], None] | None = None,
        incoming: Callable[[], int] = lambda: 0,
        workers: int = 1,
    ) -> None:
        self._infer = infer
        self.max_batch = max_batch
        # Batch sizes the model runs without padding; extra images wait for the next call.
        self.sizes = tuple(s for s in (sizes or range(1, max_batch + 1)) if s <= max_batch)
        self._carry: list[_Job] = []
        self.max_wait_s = max_wait_s
        self._queue: asyncio.Queue[_Job] = asyncio.Queue(maxsize=max_queue)
        # Model calls that may run at once: one per interpreter the runtime prepared (LiteRT with
        # several single-threaded interpreters); their threads come from the process budget.
        self.workers = workers
        self._executor = ThreadPoolExecutor(
            max_workers=workers, thread_name_prefix="inference", initializer=name_os_thread
        )
        self._tasks: list[asyncio.Task[None]] = []
        self._failure: BaseException | None = None
        self._on_batch = on_batch
        self._incoming = incoming

    @property
    def depth(self) -> int:
        return self._queue.qsize()

    @property
    def failure(self) -> BaseException | None:
        """Why the worker stopped on its own, if it did (None while it runs or after stop())."""
        return self._failure

    def start(self) -> None:
        self._failure = None
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._run(), name=f"micro-batcher-{i}") for i in range(self.workers)
        ]
        for task in self._tasks:
            task.add_done_callback(self._supervise)

    def _supervise(self, worker: asyncio.Task[None]) -> None:
        """The worker must never end by itself; if it does, nobody may wait for it any more."""
        if worker.cancelled():
            return
        self._failure = worker.exception() or RuntimeError("the batch worker returned")
        # One line an operator can find (the PosterBatchWorkerDead runbook points at it).
        logger.critical("the batch worker stopped: %s", self._failure, exc_info=self._failure)
        self._fail_everything_waiting("The model worker stopped; retry on another replica.")

    async def stop(self) -> None:
        """Stop the workers; anything still queued is answered 503."""
        for task in self._tasks:
            if not task.done():  # a dead one was reported
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._fail_everything_waiting("The service is shutting down.")
        self._executor.shutdown(wait=True)

    def _fail_everything_waiting(self, message: str) -> None:
        leftovers, self._carry = self._carry, []
        while not self._queue.empty():
            leftovers.append(self._queue.get_nowait())
        for job in leftovers:
            if not job.future.done():
                job.future.set_exception(ServiceUnavailable(message))

    async def submit(self, image: np.ndarray, timeout_s: float) -> BatchResult:
        """Queue one model input and wait for its row, never longer than `timeout_s`.

        Raises Overloaded when the queue is full, DeadlineExceeded when no answer came in time
        (whatever the reason: a slow model, or a job the worker lost).
        """
        if self._failure is not None:
            raise ServiceUnavailable("The model worker stopped; retry on another replica.")
        job = _Job(image=image, deadline=time.monotonic() + timeout_s)
        try:
            self._queue.put_nowait(job)
        except asyncio.QueueFull:
            raise Overloaded("Too many images are waiting for the model; retry shortly.") from None
        try:
            return await asyncio.wait_for(job.future, max(timeout_s, 0.0))
        except TimeoutError:
            raise DeadlineExceeded("No answer from the model in time; retry.") from None

    async def run_alone(self, work: Callable[[], T], timeout_s: float) -> Timed[T]:
        """Run `work` (another use of the model) on the model thread, between two batches and never
        beside one: two TensorFlow calls at once would only split the cores."""
        if self._failure is not None:
            raise ServiceUnavailable("The model worker stopped; retry on another replica.")
        submitted = time.monotonic()
        times: list[float] = []

        def timed() -> T:
            times.append(time.monotonic())
            result = work()
            times.append(time.monotonic())
            return result

        try:
            future = asyncio.get_running_loop().run_in_executor(self._executor, timed)
        except RuntimeError:  # the executor was shut down
            raise ServiceUnavailable("The service is shutting down.") from None
        try:
            result = await asyncio.wait_for(future, max(timeout_s, 0.0))
        except TimeoutError:
            raise DeadlineExceeded("No answer from the model in time; retry.") from None
        except Exception as exc:
            failure = InferenceFailed("The model failed on this request.")
            raise failure from exc
        return Timed(result, times[0] - submitted, times[1] - times[0])

    def _stacked(self, images: list[np.ndarray]) -> np.ndarray:
        # On the model thread, not the event loop: 16 posters are 7.7 MB to copy, and one needs no
        # copy at all (a view with a batch axis).
        return self._infer(images[0][np.newaxis] if len(images) == 1 else np.stack(images))

    async def _collect(self) -> list[_Job]:
        jobs, self._carry = self._carry, []
        if not jobs:
            jobs.append(await self._queue.get())
        give_up_at = time.monotonic() + self.max_wait_s
        while len(jobs) < self.max_batch:
            if not self._queue.empty():
                jobs.append(self._queue.get_nowait())
                continue
            remaining = give_up_at - time.monotonic()
            # Waiting costs every queued image its latency: only worth it if company is coming.
            if remaining <= 0 or self._incoming() <= 0:
                break
            try:
                jobs.append(await asyncio.wait_for(self._queue.get(), remaining))
            except TimeoutError:
                break
        return jobs

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            jobs = await self._collect()
            now = time.monotonic()
            live = []
            for job in jobs:
                if job.future.done():  # the client went away (its task was cancelled)
                    continue
                if now > job.deadline:
                    job.future.set_exception(
                        DeadlineExceeded("The request waited too long for the model; retry.")
                    )
                    continue
                live.append(job)
            if not live:
                continue
            fits = max(s for s in self.sizes if s <= len(live))
            # Extend, never replace: with several workers another one may have carried jobs too.
            live, extra = live[:fits], live[fits:]
            self._carry.extend(extra)
            images = [job.image for job in live]
            started = time.monotonic()
            try:
                probabilities = await loop.run_in_executor(self._executor, self._stacked, images)
            except Exception as exc:
                failure = InferenceFailed("The model failed on this request.")
                failure.__cause__ = exc
                for job in live:
                    if not job.future.done():
                        job.future.set_exception(failure)
                continue
            finished = time.monotonic()
            if self._on_batch is not None:
                self._on_batch(len(live))
            for job, row in zip(live, probabilities, strict=True):
                if not job.future.done():
                    job.future.set_result(
                        BatchResult(
                            probabilities=row,
                            queue_s=started - job.enqueued,
                            inference_s=finished - started,
                            batch_size=len(live),
                        )
                    )
