"""The FastAPI application: `create_app(settings)`. It is served by `python -m app` (app/server.py);
`uvicorn app.main:app` is refused with one line saying so."""

from __future__ import annotations

import importlib.metadata
import logging
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline
from starlette.formparsers import MultiPartParser

from app.admission import AdmissionMiddleware
from app.body_budget import BodyBudget
from app.config import Settings, get_settings
from app.error_handlers import domain_error_response, install_error_handlers
from app.metrics import ServiceMetrics
from app.middleware import (
    BodyLimitMiddleware,
    RequestContextMiddleware,
)
from app.openapi import honest_openapi
from app.routes import explain, health, info, open_inference, page, predict
from app.security import SecurityHeadersMiddleware
from app.service import PredictionService
from poster_genres.artifact import ModelVersion, open_version, resolve_served_versions
from poster_genres.classifier import GenreClassifier
from poster_genres.errors import ModelStoreError
from poster_genres.maps import Explainer
from poster_genres.runtimes.threads import process_budget

logger = logging.getLogger("app")
DOCS_ASSETS = "/docs-assets"


def served_versions(settings: Settings) -> list[ModelVersion]:
    """The versions to serve, the default first, each verified (files, genres, hashes).

    Raises ModelStoreError (one line saying what is wrong) when one cannot be served.
    """
    paths = resolve_served_versions(
        settings.model_store, settings.model_name, settings.model_version, settings.model_versions
    )
    return [open_version(path) for path in paths]


def load_classifier(settings: Settings, version: ModelVersion) -> GenreClassifier:
    """Load a verified version under the configured runtime, then warm up every batch shape.

    Raises ModelStoreError (one line saying what is wrong) when the version cannot be served.
    """
    budget = process_budget(settings.threads)
    classifier = GenreClassifier.from_version(
        version,
        runtime=settings.runtime,
        max_batch=settings.max_batch_size,
        interpreters=settings.interpreters,
    )
    started = time.perf_counter()
    classifier.warm_up()
    logger.info(
        "loaded %s/%s from %s under %s (%d threads, %d calls at once); warmed up batch sizes %s"
        " in %.1f s",
        classifier.name,
        classifier.version,
        version.path,
        classifier.runtime,
        budget.size,
        classifier.runner.parallel,
        list(classifier.buckets),
        time.perf_counter() - started,
    )
    return classifier


def _explainer(classifier: GenreClassifier) -> Explainer | None:
    try:
        return classifier.explainer()  # the same loaded model
    except (ValueError, ModelStoreError) as exc:  # no feature map, no class maps: predict only
        logger.warning("/explain is not available for %s: %s", classifier.version, exc)
        return None


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    classifiers: list[GenreClassifier] | None = app.state.classifiers
    if classifiers is None:  # `python -m app` loads them before binding; apps built in tests here
        try:
            classifiers = [load_classifier(settings, v) for v in served_versions(settings)]
        except ModelStoreError as exc:
            # The one line an operator needs; then startup fails and the process exits non-zero.
            logger.critical("cannot serve: %s", exc)
            raise SystemExit(f"cannot serve: {exc}") from None
    metrics: ServiceMetrics = app.state.metrics
    for classifier in classifiers:
        metrics.serve_version(
            classifier.version, classifier.genres, classifier.version_info.metadata.drift
        )
    service = PredictionService(
        classifiers, [_explainer(c) for c in classifiers], settings, metrics
    )
    await service.start()
    app.state.service = service
    try:
        yield
    finally:
        await service.stop()
        app.state.service = None
    app.state.classifiers = classifiers


def create_app(
    settings: Settings | None = None,
    classifiers: Sequence[GenreClassifier] | None = None,
    routers: Sequence[APIRouter] = (),
) -> FastAPI:
    """Build the application; the models are loaded by the lifespan (unless given, the default
    version first), never at import. `routers`: routes beyond the service's own (upload routes declared with
    `app.uploads.upload_route` get the same admission, limits and description)."""
    settings = settings or get_settings()
    metrics = ServiceMetrics()
    # Swagger UI and ReDoc from a maintained package's bundled assets: /docs works offline.
    app = FastAPIOffline(
        static_url=DOCS_ASSETS,
        favicon_url="/static/favicon.svg",
        title="poster-genres",
        summary="Which of the genres a movie belongs to, from its poster.",
        version=importlib.metadata.version("poster-genres"),
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.metrics = metrics
    body_budget = BodyBudget(settings.inflight_body_bytes)
    # Multipart files stay in memory, charged to the budget, instead of spooling to /tmp past
    # 1 MiB: in a container /tmp is memory too, uncounted, and a full one made uploads 400s.
    MultiPartParser.spool_max_size = max(settings.max_upload_bytes, settings.max_batch_upload_bytes)
    app.state.body_budget = body_budget
    app.state.started = time.monotonic()
    app.state.service = None
    app.state.classifiers = list(classifiers) if classifiers is not None else None
    app.openapi = honest_openapi(app, settings.max_batch_files)  # type: ignore[method-assign]  # FastAPI's documented way to customise the schema
    install_error_handlers(app)
    app.include_router(predict.router)
    app.include_router(explain.router)
    app.include_router(info.router)
    app.include_router(health.router)
    app.include_router(open_inference.router)
    if settings.metrics_port is None:
        app.include_router(health.metrics_router)
    app.include_router(page.router)
    for router in routers:
        app.include_router(router)
    app.mount("/static", StaticFiles(directory=page.STATIC_DIR), name="static")
    # Middleware: the last added runs first (outermost).
    app.add_middleware(
        BodyLimitMiddleware,
        settings=settings,
        budget=body_budget,
        respond=lambda scope, exc: domain_error_response(exc, scope),
    )
    app.add_middleware(
        AdmissionMiddleware,
        api_key=settings.api_key.get_secret_value() if settings.api_key else None,
        admin_key=settings.admin_key.get_secret_value() if settings.admin_key else None,
        service=lambda: app.state.service,
        max_batch_files=settings.max_batch_files,
        respond=lambda scope, exc: domain_error_response(exc, scope),
    )
    # Outside admission, so a refusal still carries the CORS headers a browser needs to read it.
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["Content-Type", "X-API-Key", "Authorization", "X-Request-ID"],
            allow_credentials=False,
        )
    app.add_middleware(RequestContextMiddleware, observe=metrics.observe_request)
    app.add_middleware(SecurityHeadersMiddleware)
    return app


UVICORN_REFUSAL = (
    "cannot start: `uvicorn app.main:app` would serve without the service's connection guards "
    "(read deadlines, connection cap, framing checks, draining); start it with `python -m app`"
)


def __getattr__(name: str) -> FastAPI:
    # `uvicorn app.main:app` (or any import of `app`) stops at once with one line, instead of
    # serving without the guards that only `python -m app` installs on uvicorn's protocol.
    if name == "app":
        raise SystemExit(UVICORN_REFUSAL)
    raise AttributeError(name)
