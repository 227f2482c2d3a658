"""The running service: `PredictionService` holds the versions it serves, each a `ModelService`
with the pipelines behind /predict, /explain and the protocol's infer.

An upload's bytes become a `PreparedPoster` in a decode lane (`app.decoding`), its pixels join a
model call through the version's micro-batcher, and the version's rule decides
(`poster_genres.pipeline` names the sequence). The gate (`app.gate`) and the decode lanes are the
process's, shared by every version, as the CPU thread budget is: a second version adds a model, not
a second set of limits. Whether the parameters are valid is the dependencies' job (`app.deps`).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from app.batching import MicroBatcher
from app.config import Settings
from app.decoding import DecodeLanes
from app.errors import NotSupported, UnknownVersion
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
from poster_genres.decision import shown
from poster_genres.maps import Explainer
from poster_genres.pipeline import PreparedPoster, Scored, render_overlay
from poster_genres.preprocessing import DeclaredWork


def _milliseconds(stages: dict[str, float]) -> dict[str, float]:
    return {stage: round(seconds * 1000, 3) for stage, seconds in stages.items()}


def _image_info(poster: PreparedPoster) -> ImageInfo:
    decoded = poster.decoded
    return ImageInfo(width=decoded.width, height=decoded.height, format=decoded.format)


class ModelService:
    """One served version: its classifier, explainer and micro-batcher, and the pipelines."""

    def __init__(
        self,
        classifier: GenreClassifier,
        explainer: Explainer | None,
        settings: Settings,
        metrics: ServiceMetrics,
        gate: Gate,
        decoding: DecodeLanes,
    ) -> None:
        self.classifier = classifier
        self.explainer = explainer
        self.settings = settings
        self.metrics = metrics
        self.gate = gate
        self.decoding = decoding
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
            on_batch=metrics.batch_size.labels(
                runtime=classifier.runtime, version=classifier.version
            ).observe,
            incoming=lambda: gate.admitted,
            workers=classifier.runner.parallel,
        )

    @property
    def version(self) -> str:
        return self.classifier.version

    async def start(self) -> None:
        self.batcher.start()
        if self.explainer is not None:
            await self.batcher.run_alone(self.explainer.warm_up, timeout_s=300)

    async def stop(self) -> None:
        await self.batcher.stop()
        self._renderer.shutdown(wait=True)

    def genres(self, versions: list[str]) -> GenresResponse:
        """The version's genres in model order, with the rule that decides `predicted`;
        `versions`: all those served."""
        rule = self.classifier.rule
        return GenresResponse(
            version=self.version,
            versions=versions,
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

    async def _prepare(
        self, data: bytes, work: DeclaredWork | None, started: float
    ) -> PreparedPoster:
        self.gate.admitted += 1
        try:
            return await self.decoding.prepare(data, work, self._remaining_s(started))
        finally:
            self.gate.admitted -= 1

    def _remaining_s(self, started: float) -> float:
        # The deadline covers the whole wait, including for a decode slot.
        return self.settings.request_deadline_s - (time.perf_counter() - started)

    async def score(self, data: bytes, top_k: int) -> tuple[PreparedPoster, Scored, Timings, int]:
        """Decode, preprocess, batch, infer and decide for one uploaded poster (`top_k` checked by
        the caller): the poster, its probabilities and decision, where the time went and the
        size of the model call it was in. Counted in the metrics."""
        self.gate.admit()
        # An excessive upload is refused (in its turn) before it counts as an image in progress.
        work = await self.decoding.declared(data)
        started = time.perf_counter()
        poster = await self._prepare(data, work, started)
        result = await self.batcher.submit(poster.pixels, self._remaining_s(started))
        decision = self.classifier.decide(result.probabilities, top_k)
        stages = {
            "decode": poster.decode_s,
            "preprocess": poster.preprocess_s,
            "queue": result.queue_s,
            "inference": result.inference_s,
            "total": time.perf_counter() - started,
        }
        self.metrics.observe_stages(stages, self.classifier.runtime, self.version)
        self.metrics.observe_answer(
            self.version,
            self.classifier.genres,
            result.probabilities,
            (genre for genre, _ in decision.predicted),
        )
        timings = Timings(**_milliseconds(stages))
        return poster, Scored(result.probabilities, decision), timings, result.batch_size

    async def predict(self, data: bytes, top_k: int) -> Prediction:
        """`score`, as /predict answers it."""
        poster, scored, timings, batch_size = await self.score(data, top_k)
        return self._prediction(poster, scored, timings, batch_size)

    async def explain(self, data: bytes, genre_index: int | None) -> Explanation:
        """Where the evidence for a genre (default: the most probable) lies in one poster."""
        explainer = self.explainer
        if explainer is None:
            raise NotSupported("This model version cannot explain its answers; /predict works.")
        self.gate.admit(explains=True)
        # Before the explanation counts: a refusal's turn is neither a slot nor explaining time.
        work = await self.decoding.declared(data)
        started = time.perf_counter()
        self.gate.explaining += 1
        try:
            poster = await self._prepare(data, work, started)
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
        self, poster: PreparedPoster, scored: Scored, timings: Timings, batch_size: int
    ) -> Prediction:
        def scores(pairs: list[tuple[str, float]]) -> list[GenreScore]:
            return [GenreScore(genre=g, probability=shown(p)) for g, p in pairs]

        genres = self.classifier.genres
        return Prediction(
            model=self.classifier.name,
            version=self.version,
            probabilities=scores(list(zip(genres, map(float, scored.probabilities), strict=True))),
            top_k=scores(scored.decision.top_k),
            predicted=scores(scored.decision.predicted),
            image=_image_info(poster),
            timings_ms=timings,
            batch_size=batch_size,
        )


class PredictionService:
    """The process's service: the gate and decode lanes every version shares, and the versions
    it serves, one of them the default (answers without ?version=)."""

    def __init__(
        self,
        classifiers: Sequence[GenreClassifier],
        explainers: Sequence[Explainer | None],
        settings: Settings,
        metrics: ServiceMetrics,
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self.decoding = DecodeLanes(
            settings.decode_workers,
            settings.max_image_pixels,
            settings.excess_refusals_per_s,
        )
        self.gate = Gate(settings, self.queue_depth, self.worker_failed)
        self.models = {
            c.version: ModelService(c, e, settings, metrics, self.gate, self.decoding)
            for c, e in zip(classifiers, explainers, strict=True)
        }
        self.name = classifiers[0].name
        self.default_version = classifiers[0].version
        metrics.track_queue(self.queue_depth)
        metrics.ready.set_function(lambda: float(self.gate.health == "ok"))
        metrics.batch_worker_up.set_function(lambda: float(not self.worker_failed()))

    def queue_depth(self) -> int:
        """Images waiting for a model, every version's batcher together."""
        return sum(m.batcher.depth for m in self.models.values())

    def worker_failed(self) -> bool:
        """Whether any version's batch worker has died."""
        return any(m.batcher.failure is not None for m in self.models.values())

    @property
    def versions(self) -> list[str]:
        """The versions served, the default first."""
        return [self.default_version, *(v for v in self.models if v != self.default_version)]

    @property
    def default(self) -> ModelService:
        return self.models[self.default_version]

    def model(self, version: str | None) -> ModelService:
        """The version asked for (None: the default); UnknownVersion (404) naming those served."""
        if version is None:
            return self.default
        found = self.models.get(version)
        if found is None:
            raise UnknownVersion(
                f"Version {version[:60]!r} is not served here; served: {', '.join(self.versions)}."
            )
        return found

    def set_default(self, version: str) -> str:
        """Make `version` (one served) the default; the previous default."""
        self.model(version)
        previous, self.default_version = self.default_version, version
        self._publish_versions()
        return previous

    def _publish_versions(self) -> None:
        """`poster_model_info`: 1 for each version served, `default` true for the default."""
        # New series first, then the stale ones go: a scrape never sees no default at all.
        for version, model in self.models.items():
            labels = (self.name, version, model.classifier.runtime)
            is_default = version == self.default_version
            self.metrics.model_info.labels(*labels, str(is_default).lower()).set(1)
            with contextlib.suppress(KeyError):
                self.metrics.model_info.remove(*labels, str(not is_default).lower())

    async def start(self) -> None:
        for model in self.models.values():
            await model.start()
        self._publish_versions()
        self.gate.status = "ok"

    async def stop(self) -> None:
        self.gate.drain()
        for model in self.models.values():
            await model.stop()
        self.decoding.shutdown()
