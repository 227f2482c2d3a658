"""The Open Inference Protocol over HTTP/REST (KServe's V2 API, as Triton, KServe, MLServer and
OpenVINO Model Server speak it), beside the service's own routes: health, metadata and infer.

Infer is an upload route like /predict/batch: the key, readiness, room and body limits are checked
from the headers, and each poster goes through the same decode lanes, batcher and rule as
/predict. Errors take the protocol's shape, `{"error": message}`, with /predict's statuses
(app/error_handlers.py). The code is in app/open_inference.py; gRPC is not served.
"""

from __future__ import annotations

import asyncio
import functools
import importlib.metadata
from typing import Any

import numpy as np
from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from app.deps import ServiceDep
from app.errors import UnknownVersion
from app.gate import BatchPlaces
from app.open_inference import (
    EXTENSIONS,
    HEADER_LENGTH,
    INPUT,
    encode_infer_response,
    error_body,
    header_length,
    parse_infer_request,
)
from app.schemas import ProtocolError
from app.service import ModelService, PredictionService
from app.uploads import Upload, error_responses, unless_client_leaves, upload_route
from poster_genres.errors import PosterGenresError
from poster_genres.pipeline import Scored

router = APIRouter(tags=["open inference protocol"])
NOT_FOUND = error_responses(ProtocolError, {404: "an unknown model or version"})
NOT_READY = error_responses(ProtocolError, {503: "loading or draining"})
MODEL = "/v2/models/{name}"
VERSION = "/v2/models/{name}/versions/{version}"
INFER = Upload(batch=True, open_inference=True)
INLINE_PARSE_BYTES = 256 * 1024


def _model(service: PredictionService, name: str, version: str | None) -> ModelService:
    if name != service.name:
        raise UnknownVersion(f"Unknown model {name[:60]!r}; this server serves {service.name!r}.")
    return service.model(version)


def _not_ready(service: PredictionService) -> JSONResponse | None:
    if service.gate.health == "ok":
        return None
    return JSONResponse(error_body(f"The service is {service.gate.health}."), status_code=503)


@router.get("/v2")
async def server_metadata() -> dict[str, Any]:
    """The server's name, version and protocol extensions."""
    return {
        "name": "poster-genres",
        "version": importlib.metadata.version("poster-genres"),
        "extensions": list(EXTENSIONS),
    }


@router.get("/v2/health/live")
async def server_live() -> dict[str, bool]:
    """200 while the process answers."""
    return {"live": True}


@router.get("/v2/health/ready", responses=NOT_READY)
async def server_ready(request: Request) -> Response:
    """200 when every version served is loaded and taking work; 503 otherwise."""
    service: PredictionService | None = request.app.state.service
    if service is None:
        return JSONResponse(error_body("The models are not loaded yet."), status_code=503)
    return _not_ready(service) or JSONResponse({"ready": True})


def _metadata(service: PredictionService, model: ModelService, versions: list[str]) -> Any:
    classifier = model.classifier
    return {
        "name": service.name,
        "versions": versions,
        "platform": f"poster-genres_{classifier.runtime}",
        "inputs": [{"name": INPUT, "datatype": "BYTES", "shape": [-1]}],
        "outputs": [
            {"name": "probabilities", "datatype": "FP32", "shape": [-1, len(classifier.genres)]},
            {"name": "predicted", "datatype": "BYTES", "shape": [-1]},
        ],
        "parameters": {"genres": classifier.genres, "default_version": service.default_version},
    }


@router.get(MODEL, responses=NOT_FOUND)
async def model_metadata(service: ServiceDep, name: str) -> Any:
    """The model's input and outputs (the default version's) and every version served."""
    return _metadata(service, _model(service, name, None), service.versions)


@router.get(VERSION, responses=NOT_FOUND)
async def version_metadata(service: ServiceDep, name: str, version: str) -> Any:
    """One served version's input and outputs."""
    return _metadata(service, _model(service, name, version), [version])


@router.get(f"{MODEL}/ready", responses={**NOT_FOUND, **NOT_READY})
async def model_ready(service: ServiceDep, name: str) -> Response:
    """200 when the model's default version takes work."""
    _model(service, name, None)
    return _not_ready(service) or JSONResponse({"name": name, "ready": True})


@router.get(f"{VERSION}/ready", responses={**NOT_FOUND, **NOT_READY})
async def version_ready(service: ServiceDep, name: str, version: str) -> Response:
    """200 when the version takes work."""
    _model(service, name, version)
    return _not_ready(service) or JSONResponse({"name": name, "ready": True})


async def _infer(request: Request, service: PredictionService, model: ModelService) -> Response:
    body = await request.body()
    json_length = header_length(request.headers.get(HEADER_LENGTH), len(body))
    parse = functools.partial(
        parse_infer_request, body, json_length, service.settings.max_batch_files
    )
    # A large body (base64 posters) takes tens of milliseconds to parse: off the event loop.
    large = len(body) > INLINE_PARSE_BYTES
    parsed = await asyncio.get_running_loop().run_in_executor(None, parse) if large else parse()
    places: BatchPlaces = request.state.batch_places  # held by admission, from the headers
    places.need(len(parsed.images))
    scored = await unless_client_leaves(
        request,
        asyncio.gather(*(model.score(image, 1) for image in parsed.images), return_exceptions=True),
    )
    results: list[Scored] = []
    for index, outcome in enumerate(scored):
        if isinstance(outcome, PosterGenresError):
            outcome.message = f"Poster {index}: {outcome.message}"
            raise outcome
        if isinstance(outcome, BaseException):
            raise outcome
        results.append(outcome[1])
    answer, headers = encode_infer_response(
        parsed,
        service.name,
        model.version,
        np.stack([r.probabilities for r in results]),
        [[genre for genre, _ in r.decision.predicted] for r in results],
    )
    return Response(answer, headers=headers)


@upload_route(router, f"{MODEL}/infer", INFER, response_class=Response)
async def infer(request: Request, service: ServiceDep, name: str) -> Response:
    """Probabilities and predicted genres for posters, by the default version."""
    return await _infer(request, service, _model(service, name, None))


@upload_route(router, f"{VERSION}/infer", INFER, response_class=Response)
async def infer_version(request: Request, service: ServiceDep, name: str, version: str) -> Response:
    """Probabilities and predicted genres for posters, by the version in the path."""
    return await _infer(request, service, _model(service, name, version))
