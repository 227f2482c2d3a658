"""PredictionService: the pipelines behind /predict and /explain, on the running service.

An upload's bytes become a `PreparedPoster` in a decode lane (`app.decoding`), its pixels join a
model call through the micro-batcher, and the version's rule decides (`poster_genres.pipeline`
names the sequence). Whether there is room for the work is the gate's job (`app.gate`); whether the
parameters are valid, the routes' dependencies' (`app.deps`).
"""

from __future__ import annotations

import asyncio
import base64
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from app.batching import MicroBatcher
from app.config import Settings
from app.decoding import DecodeLanes
from app.errors import NotSupported
from app.gate import Gate
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
from app.threads import name_os_thread
from poster_genres.classifier import GenreClassifier
from poster_genres.decision import Decision, shown
from poster_genres.maps import Explainer
from poster_genres.pipeline import PreparedPoster, render_overlay


def _milliseconds(stages: dict[str, float]) -> dict[str, float]:
    return {stage: round(seconds * 1000, 3) for stage, seconds in stages.items()}


def _image_info(poster: PreparedPoster) -> ImageInfo:
    decoded = poster.decoded
    return ImageInfo(width=decoded.width, height=decoded.height, format=decoded.format)


class PredictionService:
    """The running service: the gate, the decode lanes, the batcher, and the two pipelines."""

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
        self.decoding = DecodeLanes(settings.decode_workers, settings.max_image_pixels)
        # Its own thread, not a decode slot: drawing never holds up predictions' decoding.
        self._renderer = ThreadPoolExecutor(
            1, thread_name_prefix="render", initializer=name_os_thread
        )
        self.batcher = MicroBatcher(
            classifier.predict,
            max_batch=min(settings.max_batch_size, classifier.max_batch),
            max_wait_s=settings.max_batch_wait_ms / 1000.0,
            max_queue=settings.max_queue,
            sizes=classifier.buckets,
            on_batch=metrics.batch_size.labels(runtime=classifier.runtime).observe,
            incoming=lambda: self.gate.admitted,
            workers=classifier.runner.parallel,
        )
        self.gate = Gate(
            settings,
            queue_depth=lambda: self.batcher.depth,
            worker_failed=lambda: self.batcher.failure is not None,
        )
        metrics.track_queue(lambda: self.batcher.depth)
        metrics.ready.set_function(lambda: float(self.gate.health == "ok"))
        metrics.batch_worker_up.set_function(lambda: float(self.batcher.failure is None))

    async def start(self) -> None:
        self.batcher.start()
        if self.explainer is not None:
            await self.batcher.run_alone(self.explainer.warm_up, timeout_s=300)
        self.gate.status = "ok"

    async def stop(self) -> None:
        self.gate.drain()
        await self.batcher.stop()
        self.decoding.shutdown()
        self._renderer.shutdown(wait=True)

    def genres(self) -> GenresResponse:
        """The version's genres in model order, with the rule that decides `predicted`."""
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

    async def _prepare(self, data: bytes, started: float) -> PreparedPoster:
        self.gate.admitted += 1
        try:
            return await self.decoding.prepare(data, self._remaining_s(started))
        finally:
            self.gate.admitted -= 1

    def _remaining_s(self, started: float) -> float:
        # The deadline covers the whole wait, including for a decode slot.
        return self.settings.request_deadline_s - (time.perf_counter() - started)

    async def predict(self, data: bytes, top_k: int) -> Prediction:
        """Decode, preprocess, batch, infer and decide for one uploaded poster (`top_k` checked by
        the caller)."""
        self.gate.admit()
        started = time.perf_counter()
        poster = await self._prepare(data, started)
        result = await self.batcher.submit(poster.pixels, self._remaining_s(started))
        decision = self.classifier.decide(result.probabilities, top_k)
        stages = {
            "decode": poster.decode_s,
            "preprocess": poster.preprocess_s,
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
        return self._prediction(poster, result.probabilities, decision, stages, result.batch_size)

    async def explain(self, data: bytes, genre_index: int | None) -> Explanation:
        """Where the evidence for a genre (default: the most probable) lies in one poster."""
        explainer = self.explainer
        if explainer is None:
            raise NotSupported("This model version cannot explain its answers; /predict works.")
        self.gate.admit(explains=True)
        started = time.perf_counter()
        self.gate.explaining += 1
        try:
            poster = await self._prepare(data, started)
            explained = await self.batcher.run_alone(
                lambda: explainer.explain(poster.pixels, genre_index), self._remaining_s(started)
            )
            drawn = time.perf_counter()
            image = await asyncio.get_running_loop().run_in_executor(
                self._renderer, render_overlay, poster.decoded, explained.result
            )
            render_s = time.perf_counter() - drawn
        finally:
            self.gate.explaining -= 1
            self.gate.spend_explaining(time.perf_counter() - started)
        genre_map = explained.result
        stages = {
            "decode": poster.decode_s,
            "preprocess": poster.preprocess_s,
            "queue": explained.queue_s,
            "explain": explained.run_s,
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
            overlay_png=base64.b64encode(image.png).decode("ascii"),
            overlay_width=image.width,
            overlay_height=image.height,
            image=_image_info(poster),
            timings_ms=ExplainTimings(**_milliseconds(stages)),
        )

    def _prediction(
        self,
        poster: PreparedPoster,
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
            image=_image_info(poster),
            timings_ms=Timings(**_milliseconds(stages)),
            batch_size=batch_size,
        )
