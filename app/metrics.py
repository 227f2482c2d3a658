"""Prometheus metrics, one registry per app so several apps (tests) never share counters."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

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
            ["stage", "runtime"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.batch_size = Histogram(
            "poster_batch_size",
            "Images per model call",
            ["runtime"],
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
            registry=self.registry,
        )
        self.model_info = Gauge(
            "poster_model_info",
            "The model version served (1), by name, version and runtime",
            ["name", "version", "runtime"],
            registry=self.registry,
        )
        self.queue_depth = Gauge(
            "poster_queue_depth", "Images waiting for the model", registry=self.registry
        )
        self.predicted = Counter(
            "poster_predicted_genre",
            "Genres returned as predicted",
            ["genre"],
            registry=self.registry,
        )

    def observe_request(self, route: str, status: int, seconds: float) -> None:
        self.requests.labels(route=route, status=str(status)).inc()
        self.request_latency.labels(route=route).observe(seconds)

    def observe_stages(self, timings_s: dict[str, float], runtime: str) -> None:
        for stage, seconds in timings_s.items():
            self.stage_latency.labels(stage=stage, runtime=runtime).observe(seconds)

    def track_queue(self, depth: Callable[[], float]) -> None:
        self.queue_depth.set_function(depth)
