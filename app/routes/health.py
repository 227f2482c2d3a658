"""Probes: /health/live never touches the model; /health and /health/ready say if we can serve."""

from __future__ import annotations

import time

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from app.schemas import ErrorResponse, Health, Liveness
from app.service import PredictionService

router = APIRouter(tags=["operations"])


@router.get("/health/live", response_model=Liveness)
async def live() -> Liveness:
    """The process is up and its event loop answers."""
    return Liveness(status="alive")


@router.get(
    "/health/ready",
    response_model=Health,
    responses={503: {"model": Health, "description": "loading, draining or failed"}},
)
@router.get(
    "/health",
    response_model=Health,
    responses={503: {"model": Health, "description": "loading, draining or failed"}},
)
async def ready(request: Request) -> Response:
    """200 when every version served is loaded, warmed up and taking work; 503 with the reason
    otherwise. `version` and `runtime` are the default version's."""
    service: PredictionService | None = request.app.state.service
    if service is None:
        body = Health(status="loading", uptime_s=time.monotonic() - request.app.state.started)
        return JSONResponse(body.model_dump(), status_code=503)
    default = service.default.classifier
    body = Health(
        status=service.gate.health,
        model=default.name,
        version=default.version,
        runtime=default.runner.runtime,
        versions=service.versions,
        uptime_s=round(service.gate.uptime_s, 3),
    )
    return JSONResponse(body.model_dump(), status_code=200 if body.status == "ok" else 503)


# Registered only when POSTER_METRICS_PORT is unset; otherwise app/metrics_port.py serves it.
metrics_router = APIRouter(tags=["operations"])


@metrics_router.get(
    "/metrics",
    responses={
        200: {"content": {"text/plain": {}}},
        401: {"model": ErrorResponse, "description": "unauthorized (when an API key is set)"},
        500: {"model": ErrorResponse},
    },
)
async def metrics(request: Request) -> Response:
    """Prometheus exposition of the service's metrics."""
    return Response(
        generate_latest(request.app.state.metrics.registry), media_type=CONTENT_TYPE_LATEST
    )
