"""Decoding off the event loop, in bounded lanes, under the request's deadline.

Posters decode in `POSTER_DECODE_WORKERS` threads. Uploads that declare more work than any poster
needs (many megapixels, or many scans of a progressive JPEG: 62 KiB can cost 2 s of CPU) decode one
at a time in a lane of their own, at the lowest CPU priority: they cannot take the decode slots or
the cores from everyone else's posters.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

from app.errors import DeadlineExceeded
from app.threads import name_os_thread, name_os_thread_at_lowest_priority
from poster_genres.pipeline import PreparedPoster, prepare_poster
from poster_genres.preprocessing import decode_work

# Declared pixels x passes beyond which an upload decodes in the heavy lane: 8 MP once, or a
# 0.8 MP progressive JPEG of 10 scans. The dataset's posters are about 0.13 MP x 1.
HEAVY_DECODE_WORK = 8_000_000


class DecodeLanes:
    """Bytes -> `PreparedPoster` in a decode thread: one trip per poster for both stages (each
    trip costs a wake-up of the loop)."""

    def __init__(self, workers: int, max_pixels: int) -> None:
        self._max_pixels = max_pixels
        self._slots = asyncio.Semaphore(workers)
        self._pool = ThreadPoolExecutor(
            workers, thread_name_prefix="decode", initializer=name_os_thread
        )
        self._heavy_slot = asyncio.Semaphore(1)
        self._heavy_pool = ThreadPoolExecutor(
            1, thread_name_prefix="decode-heavy", initializer=name_os_thread_at_lowest_priority
        )

    async def prepare(self, data: bytes, deadline_s: float) -> PreparedPoster:
        """The prepared poster, or DeadlineExceeded when it is not ready within `deadline_s`
        (waiting for a slot included)."""
        heavy = decode_work(data) > HEAVY_DECODE_WORK
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
