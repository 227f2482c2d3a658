"""PredictionService: upload bytes -> Prediction, with bounded decoding and micro-batched inference.

Owns the classifier, the batcher and the decode threads; the routes only call `predict`.
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Literal

import numpy as np

from app.batching import MicroBatcher
from app.config import Settings
from app.errors import (
    DeadlineExceeded,
    InvalidParameter,
    NotSupported,
    Overloaded,
    ServiceUnavailable,
)
from app.metrics import ServiceMetrics
from app.schemas import (
    DecisionRuleInfo,
    ExplainTimings,
    Explanation,
    GenreInfo,
    GenreScore,
    GenresResponse,
    ImageInfo,
    Prediction,
    Timings,
)
from app.threads import name_os_thread, name_os_thread_at_lowest_priority
from app.time_share import TimeShare
from poster_genres.classifier import GenreClassifier
from poster_genres.decision import Decision, shown
from poster_genres.heatmap import overlay, png_bytes
from poster_genres.maps import Explainer, GenreMap
from poster_genres.preprocessing import (
    DecodedPoster,
    decode_poster,
    decode_work,
    to_model_pixels,
)

Status = Literal["loading", "ok", "draining", "failed"]
EXPLANATIONS_FULL = (
    "Explanations are at their limit (at once, or their share of the service's time); "
    "retry shortly."
)
# Declared pixels x passes beyond which an upload decodes in the heavy lane: 8 MP once, or a
# 0.8 MP progressive JPEG of 10 scans. The dataset's posters are about 0.13 MP x 1.
HEAVY_DECODE_WORK = 8_000_000


class BatchPlaces:
    """The queue places one batch request holds: as many as a batch may have files, from its
    headers (before its body is read), then only as many as it has, once they are counted."""

    def __init__(self, give_back: Callable[[int], None], held: int) -> None:
        self._give_back = give_back
        self.held = held

    def keep(self, n: int) -> None:
        """Give back the places beyond `n`."""
        extra = max(self.held - n, 0)
        self._give_back(extra)
        self.held -= extra

    def release(self) -> None:
        self.keep(0)


class PredictionService:
    """The running service: state for the probes, and the prediction pipeline."""

    def __init__(
        self,
        classifier: GenreClassifier,
        settings: Settings,
        metrics: ServiceMetrics,
        explainer: Explainer | None,
    ) -> None:
        self.classifier = classifier
        self.explainer = explainer
        self.settings = settings
        self.metrics = metrics
        self.status: Status = "loading"
        self.started = time.monotonic()
        self._decode_slots = asyncio.Semaphore(settings.decode_workers)
        # Uploads that declare more work than any poster needs (many megapixels, or many scans of
        # a progressive JPEG: 62 KiB can cost 2 s of CPU) decode one at a time, at the lowest CPU
        # priority: they cannot take the decode slots or the cores from everyone else's posters.
        self._heavy_slot = asyncio.Semaphore(1)
        self._heavy_decoder = ThreadPoolExecutor(
            1, thread_name_prefix="decode-heavy", initializer=name_os_thread_at_lowest_priority
        )
        self._decoder = ThreadPoolExecutor(
            settings.decode_workers, thread_name_prefix="decode", initializer=name_os_thread
        )
        self._renderer = ThreadPoolExecutor(
            1, thread_name_prefix="render", initializer=name_os_thread
        )
        self._admitted = 0
        self._explaining = 0
        self._explain_time = TimeShare(settings.explain_share)
        self._batch_images = 0
        self._batch_places = int(settings.max_batch_share * settings.max_queue)
        self.batcher = MicroBatcher(
            classifier.predict,
            max_batch=min(settings.max_batch_size, classifier.max_batch),
            max_wait_s=settings.max_batch_wait_ms / 1000.0,
            max_queue=settings.max_queue,
            sizes=classifier.buckets,
            on_batch=metrics.batch_size.labels(runtime=classifier.runtime).observe,
            incoming=lambda: self._admitted,
            workers=classifier.runner.parallel,
        )
        metrics.track_queue(lambda: self.batcher.depth)
        metrics.ready.set_function(lambda: float(self.health == "ok"))
        metrics.batch_worker_up.set_function(lambda: float(self.batcher.failure is None))

    async def start(self) -> None:
        self.batcher.start()
        if self.explainer is not None:
            await self.batcher.run_alone(self.explainer.warm_up, timeout_s=300)
        self.status = "ok"

    def drain(self) -> None:
        """Refuse new work from now on; in-flight requests carry on."""
        self.status = "draining"

    async def stop(self) -> None:
        self.status = "draining"
        await self.batcher.stop()
        self._decoder.shutdown(wait=True)
        self._heavy_decoder.shutdown(wait=False, cancel_futures=True)
        self._renderer.shutdown(wait=True)

    @property
    def health(self) -> Status:
        """`failed` once the batch worker has died: no request can be answered any more."""
        return "failed" if self.batcher.failure is not None else self.status

    @property
    def saturated(self) -> bool:
        """True when a new image would be refused anyway: decoding or the model queue is full."""
        return (
            self._admitted >= self.settings.max_queue
            or self.batcher.depth >= self.settings.max_queue
        )

    @property
    def explanations_full(self) -> bool:
        """True when a new /explain would be refused: as many are in progress as may be, or
        explanations have taken their share of the time (POSTER_EXPLAIN_SHARE)."""
        return (
            self._explaining >= self.settings.max_explanations or not self._explain_time.available()
        )

    def hold_batch_places(self, n: int) -> BatchPlaces:
        """Hold `n` of the queue places batch requests share, or refuse at once: batches together
        never take more than POSTER_MAX_BATCH_SHARE of the queue, so single posters still fit."""
        if self._batch_images + n > self._batch_places:
            raise Overloaded("Too many batch images are in progress; retry shortly.")
        self._batch_images += n
        return BatchPlaces(self._give_back_batch_places, n)

    def _give_back_batch_places(self, n: int) -> None:
        self._batch_images -= n

    @property
    def uptime_s(self) -> float:
        return time.monotonic() - self.started

    def genres(self) -> GenresResponse:
        rule = self.classifier.rule
        return GenresResponse(
            genres=[
                GenreInfo(
                    index=i,
                    genre=genre,
                    threshold=shown(rule.thresholds[i]) if rule.uses_thresholds else None,
                    predictable=bool(rule.predictable[i]),
                )
                for i, genre in enumerate(rule.genres)
            ],
            rule=DecisionRuleInfo(
                kind=rule.kind,
                max_predicted=rule.max_predicted,
                floor=shown(rule.floor),
                summary=rule.summary(),
            ),
        )

    def check_top_k(self, top_k: int | None) -> int:
        k = self.settings.default_top_k if top_k is None else top_k
        n = len(self.classifier.genres)
        if not 1 <= k <= n:
            raise InvalidParameter(f"top_k must be between 1 and {n}, got {k}.")
        return k

    def _decode_and_resize(self, data: bytes) -> tuple[DecodedPoster, np.ndarray, float, float]:
        t0 = time.perf_counter()
        decoded = decode_poster(data, max_pixels=self.settings.max_image_pixels)
        t1 = time.perf_counter()
        pixels = to_model_pixels(decoded.image)
        return decoded, pixels, t1 - t0, time.perf_counter() - t1

    async def _decode(self, data: bytes) -> tuple[DecodedPoster, np.ndarray, float, float]:
        # One trip to a decode thread for both stages: each trip costs a wake-up of the loop.
        heavy = decode_work(data) > HEAVY_DECODE_WORK
        slots, pool = (
            (self._heavy_slot, self._heavy_decoder)
            if heavy
            else (self._decode_slots, self._decoder)
        )
        async with slots:
            return await asyncio.get_running_loop().run_in_executor(
                pool, self._decode_and_resize, data
            )

    def check_genre(self, genre: str | None) -> int | None:
        """The index of a genre named exactly as in /genres; None for "the most probable"."""
        if genre is None:
            return None
        try:
            return self.classifier.genres.index(genre)
        except ValueError:
            raise InvalidParameter(
                f"Unknown genre {genre[:40]!r}; GET /genres lists the {len(self.classifier.genres)}"
                " names (case matters)."
            ) from None

    def _admit(self) -> None:
        if self.health != "ok":
            raise ServiceUnavailable(f"The service is {self.health}; retry on another replica.")
        if self.saturated:
            raise Overloaded("Too many images are being processed; retry shortly.")

    async def _decode_in_time(self, data: bytes) -> tuple[DecodedPoster, np.ndarray, float, float]:
        self._admitted += 1
        try:
            return await asyncio.wait_for(self._decode(data), self.settings.request_deadline_s)
        except TimeoutError:
            raise DeadlineExceeded("The image waited too long to be decoded; retry.") from None
        finally:
            self._admitted -= 1

    def _remaining_s(self, started: float) -> float:
        # The deadline covers the whole wait, including for a decode slot.
        return self.settings.request_deadline_s - (time.perf_counter() - started)

    async def predict(self, data: bytes, top_k: int | None) -> Prediction:
        """Decode, preprocess, batch, infer and decide for one uploaded poster."""
        k = self.check_top_k(top_k)
        self._admit()
        started = time.perf_counter()
        decoded, model_input, decode_s, preprocess_s = await self._decode_in_time(data)
        result = await self.batcher.submit(model_input, self._remaining_s(started))
        decision = self.classifier.decide(result.probabilities, k)
        stages = {
            "decode": decode_s,
            "preprocess": preprocess_s,
            "queue": result.queue_s,
            "inference": result.inference_s,
            "total": time.perf_counter() - started,
        }
        self.metrics.observe_stages(stages, self.classifier.runtime)
        self.metrics.observe_answer(
            self.classifier.version,
            self.classifier.genres,
            result.probabilities,
            (genre for genre, _ in decision.predicted),
        )
        return self._prediction(decoded, result.probabilities, decision, stages, result.batch_size)

    async def explain(self, data: bytes, genre: str | None) -> Explanation:
        """Where the evidence for `genre` (default: the most probable) lies in one poster."""
        index = self.check_genre(genre)
        explainer = self.explainer
        if explainer is None:
            raise NotSupported("This model version cannot explain its answers; /predict works.")
        self._admit()
        if self.explanations_full:
            raise Overloaded(EXPLANATIONS_FULL)
        started = time.perf_counter()
        self._explaining += 1
        try:
            decoded, pixels, decode_s, preprocess_s = await self._decode_in_time(data)
            genre_map, queue_s, explain_s = await self.batcher.run_alone(
                lambda: explainer.explain(pixels, index), self._remaining_s(started)
            )
            drawn = time.perf_counter()
            # Its own thread, not a decode slot: drawing never holds up predictions' decoding.
            png, size = await asyncio.get_running_loop().run_in_executor(
                self._renderer, self._render, decoded, genre_map
            )
            render_s = time.perf_counter() - drawn
        finally:
            self._explaining -= 1
            self._explain_time.spend(time.perf_counter() - started)
        stages = {
            "decode": decode_s,
            "preprocess": preprocess_s,
            "queue": queue_s,
            "explain": explain_s,
            "render": render_s,
            "total": time.perf_counter() - started,
        }
        predicted = self.classifier.rule.predicted_indices(genre_map.probabilities)
        return Explanation(
            model=self.classifier.name,
            version=self.classifier.version,
            genre=self.classifier.genres[genre_map.genre_index],
            probability=shown(genre_map.probability),
            predicted=genre_map.genre_index in predicted,
            method=explainer.method,
            grid=[[shown(v) for v in row] for row in genre_map.grid],
            overlay_png=base64.b64encode(png).decode("ascii"),
            overlay_width=size[0],
            overlay_height=size[1],
            image=ImageInfo(width=decoded.width, height=decoded.height, format=decoded.format),
            timings_ms=ExplainTimings(**{k: round(v * 1000, 3) for k, v in stages.items()}),
        )

    @staticmethod
    def _render(decoded: DecodedPoster, genre_map: GenreMap) -> tuple[bytes, tuple[int, int]]:
        image = overlay(decoded.image, genre_map.grid)
        return png_bytes(image), image.size

    def _prediction(
        self,
        decoded: DecodedPoster,
        probabilities: np.ndarray,
        decision: Decision,
        stages: dict[str, float],
        batch_size: int,
    ) -> Prediction:
        def scores(pairs: list[tuple[str, float]]) -> list[GenreScore]:
            return [GenreScore(genre=g, probability=shown(p)) for g, p in pairs]

        return Prediction(
            model=self.classifier.name,
            version=self.classifier.version,
            probabilities=scores(
                list(zip(self.classifier.genres, map(float, probabilities), strict=True))
            ),
            top_k=scores(decision.top_k),
            predicted=scores(decision.predicted),
            image=ImageInfo(width=decoded.width, height=decoded.height, format=decoded.format),
            timings_ms=Timings(**{k: round(v * 1000, 3) for k, v in stages.items()}),
            batch_size=batch_size,
        )
