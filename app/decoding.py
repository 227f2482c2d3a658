"""Decoding off the event loop, in bounded lanes, under the request's deadline.

Posters decode in `POSTER_DECODE_WORKERS` threads. Uploads that declare more work than any poster
needs (many megapixels, or many scans of a progressive JPEG: 62 KiB can cost 2 s of CPU) decode one
at a time in a lane of their own, at the lowest CPU priority: they cannot take the decode slots or
the cores from everyone else's posters.

Uploads that declare more than any poster needs (over the pixel limit, or a progressive JPEG of too
many scans or pixel-passes) are refused from their header, before any decoding, and those refusals
are paced (`app.pace`, `POSTER_EXCESS_REFUSALS_PER_S`).
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

from app.errors import DeadlineExceeded
from app.pace import Pace
from app.threads import name_os_thread, name_os_thread_at_lowest_priority
from poster_genres.errors import ImageTooLarge
from poster_genres.pipeline import PreparedPoster, prepare_poster
from poster_genres.preprocessing import DeclaredWork, check_declared_work, declared_work

# Declared pixels x passes beyond which an upload decodes in the heavy lane: 8 MP once, or a
# 0.8 MP progressive JPEG of 10 scans. The dataset's posters are about 0.13 MP x 1.
HEAVY_DECODE_WORK = 8_000_000


class DecodeLanes:
    """Bytes -> `PreparedPoster` in a decode thread: one trip per poster for both stages (each
    trip costs a wake-up of the loop)."""

    def __init__(self, workers: int, max_pixels: int, excess_refusals_per_s: float) -> None:
        self._max_pixels = max_pixels
        self._excess_refusals = Pace(excess_refusals_per_s)
        self._slots = asyncio.Semaphore(workers)
        self._pool = ThreadPoolExecutor(
            workers, thread_name_prefix="decode", initializer=name_os_thread
        )
        self._heavy_slot = asyncio.Semaphore(1)
        self._heavy_pool = ThreadPoolExecutor(
            1, thread_name_prefix="decode-heavy", initializer=name_os_thread_at_lowest_priority
        )

    async def declared(self, data: bytes) -> DeclaredWork | None:
        """The work `data`'s header declares (None when it cannot be read: decoding refuses it).
        ImageTooLarge, in its turn (`app.pace`), when that is more than allowed."""
        work = declared_work(data)
        if work is not None:
            try:
                check_declared_work(work, max_pixels=self._max_pixels)
            except ImageTooLarge:
                await asyncio.sleep(self._excess_refusals.wait_s())
                raise
        return work

    async def prepare(
        self, data: bytes, work: DeclaredWork | None, deadline_s: float
    ) -> PreparedPoster:
        """The prepared poster, or DeadlineExceeded when it is not ready within `deadline_s`
        (waiting for a slot included). `work` is what `declared` said of `data`."""
        heavy = work is not None and work.passes > HEAVY_DECODE_WORK
        slot, pool = (self._heavy_slot, self._heavy_pool) if heavy else (self._slots, self._pool)

        async def in_lane() -> PreparedPoster:
            async with slot:
                return await asyncio.get_running_loop().run_in_executor(
                    pool, lambda: prepare_poster(data, max_pixels=self._max_pixels)
                )

        try:
            return await asyncio.wait_for(in_lane(), deadline_s)
        except TimeoutError:
            raise DeadlineExceeded("The image waited too long to be decoded; retry.") from None

    def shutdown(self) -> None:
        """Finish what the poster lane has; drop the heavy lane's queue (it may be a bomb)."""
        self._pool.shutdown(wait=True)
        self._heavy_pool.shutdown(wait=False, cancel_futures=True)
