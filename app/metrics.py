"""Prometheus metrics, one registry per app so several apps (tests) never share counters."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from poster_genres.drift import DriftReference

# What the alert rules watch (deploy/prometheus/rules.yml; tests/test_alerts.py checks they agree):
# these error series start at zero, so that a rate sees the very first one.
PREDICTION_ROUTES = (
    "/predict",
    "/predict/batch",
    "/explain",
    "/v2/models/{name}/infer",
    "/v2/models/{name}/versions/{version}/infer",
)
SHED_CODES = ("overloaded", "deadline_exceeded", "unavailable", "not_ready")
REFUSED_UPLOAD_CODES = (
    "empty_file",
    "invalid_image",
    "unsupported_format",
    "unsupported_media_type",
    "image_too_large",
    "payload_too_large",
    "missing_file",
    "too_many_files",
)
CONNECTION_REFUSAL_CODES = ("request_timeout", "headers_too_large", "bad_request", "overloaded")
_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class ServiceMetrics:
    """Requests by route and status, per-stage latency, batch sizes, queue depth, genres."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "poster_requests", "HTTP requests", ["route", "status"], registry=self.registry
        )
        self.request_latency = Histogram(
            "poster_request_seconds",
            "HTTP request latency",
            ["route"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.stage_latency = Histogram(
            "poster_stage_seconds",
            "Time per prediction stage",
            ["stage", "runtime", "version"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.batch_size = Histogram(
            "poster_batch_size",
            "Images per model call",
            ["runtime", "version"],
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
            registry=self.registry,
        )
        self.model_info = Gauge(
            "poster_model_info",
            "Each model version served (1), by name, version and runtime; `default` is true for the"
            " one that answers requests without a version",
            ["name", "version", "runtime", "default"],
            registry=self.registry,
        )
        self.queue_depth = Gauge(
            "poster_queue_depth", "Images waiting for the model", registry=self.registry
        )
        self.errors = Counter(
            "poster_errors",
            "Error answers by route and error code (the JSON body's error.code)",
            ["route", "code"],
            registry=self.registry,
        )
        self.connection_refusals = Counter(
            "poster_connection_refusals",
            "Requests refused by the connection layer before any route, by error code "
            "(request_timeout, headers_too_large, bad_request, overloaded)",
            ["code"],
            registry=self.registry,
        )
        for code in CONNECTION_REFUSAL_CODES:
            self.connection_refusals.labels(code=code)
        self.ready = Gauge(
            "poster_ready", "1 while the service accepts predictions", registry=self.registry
        )
        self.batch_worker_up = Gauge(
            "poster_batch_worker_up",
            "1 while the model's batch worker runs; 0 once it has died",
            registry=self.registry,
        )
        # The genre mix of answers, per version: where replicas add up, the drift rule compares it
        # with the version's reference (poster_genres/drift.py, deploy/prometheus/rules.yml).
        self.answers = Counter(
            "poster_answers",
            "Posters answered, by model version",
            ["version"],
            registry=self.registry,
        )
        self.predicted = Counter(
            "poster_genre_predicted",
            "Answers whose predicted list holds the genre",
            ["version", "genre"],
            registry=self.registry,
        )
        self.probability = Counter(
            "poster_genre_probability",
            "Sum of the genre's probability over answers (divide by poster_answers for the mean)",
            ["version", "genre"],
            registry=self.registry,
        )
        self.reference_rate = Gauge(
            "poster_genre_reference_rate",
            "How often the version predicts the genre on held-out posters",
            ["version", "genre"],
            registry=self.registry,
        )
        self.reference_probability = Gauge(
            "poster_genre_reference_probability",
            "The genre's mean probability on held-out posters",
            ["version", "genre"],
            registry=self.registry,
        )
        self.drift_threshold = Gauge(
            "poster_drift_threshold",
            "PSI of the genre mix above which random held-out windows fall less than 1% of the time",
            ["version"],
            registry=self.registry,
        )
        # Refusals made before routing (admission, body limits) carry route="unmatched".
        for route in (*PREDICTION_ROUTES, "unmatched"):
            for code in SHED_CODES + REFUSED_UPLOAD_CODES:
                self.errors.labels(route=route, code=code)
        for route in PREDICTION_ROUTES:
            self.requests.labels(route=route, status="500")

    def observe_request(self, route: str, status: int, seconds: float, code: str | None) -> None:
        self.requests.labels(route=route, status=str(status)).inc()
        self.request_latency.labels(route=route).observe(seconds)
        if code is not None:
            self.errors.labels(route=route, code=code).inc()

    def observe_connection_refusal(self, code: str) -> None:
        """A refusal `app/connections.py` wrote to the socket itself (no route saw it)."""
        self.connection_refusals.labels(code=code).inc()

    def observe_item_error(self, route: str, code: str) -> None:
        """An error answered inside a 200 (one file of a batch): counted as its own request's
        would be."""
        self.errors.labels(route=route, code=code).inc()

    def serve_version(
        self, version: str, genres: Sequence[str], reference: DriftReference | None
    ) -> None:
        """Start a version's genre-mix series at zero (a rate needs two samples) and publish its
        drift reference, when the metadata has one."""
        self.answers.labels(version=version)
        for index, genre in enumerate(genres):
            self.predicted.labels(version=version, genre=genre)
            self.probability.labels(version=version, genre=genre)
            if reference is not None:
                rate, mean = reference.predicted_rate[index], reference.mean_probability[index]
                self.reference_rate.labels(version=version, genre=genre).set(rate)
                self.reference_probability.labels(version=version, genre=genre).set(mean)
        if reference is not None:
            self.drift_threshold.labels(version=version).set(reference.psi_threshold)

    def observe_answer(
        self,
        version: str,
        genres: Sequence[str],
        probabilities: np.ndarray,
        predicted: Iterable[str],
    ) -> None:
        """Count one answer into its version's genre mix."""
        self.answers.labels(version=version).inc()
        for genre in predicted:
            self.predicted.labels(version=version, genre=genre).inc()
        for genre, probability in zip(genres, probabilities.tolist(), strict=True):
            self.probability.labels(version=version, genre=genre).inc(probability)

    def observe_stages(self, timings_s: dict[str, float], runtime: str, version: str) -> None:
        for stage, seconds in timings_s.items():
            self.stage_latency.labels(stage=stage, runtime=runtime, version=version).observe(
                seconds
            )

    def track_queue(self, depth: Callable[[], float]) -> None:
        self.queue_depth.set_function(depth)
