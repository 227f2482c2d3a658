"""GET /genres and GET /model: what a served version knows; PUT /admin/default-version."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Request

from app.deps import ModelDep, ServiceDep
from app.schemas import (
    DefaultVersion,
    DefaultVersionChanged,
    ErrorResponse,
    GenresResponse,
    ModelInfo,
)
from app.uploads import error_responses

router = APIRouter(tags=["model"])
logger = logging.getLogger("app")
UNKNOWN_VERSION = error_responses(ErrorResponse, {404: "unknown_version"})


@router.get("/genres", response_model=GenresResponse, responses=UNKNOWN_VERSION)
async def genres(service: ServiceDep, model: ModelDep) -> GenresResponse:
    """The genres in model output order, with each one's decision threshold, and the decision
    rule in plain words (of the version asked for with ?version=, else the default)."""
    return model.genres(service.versions)


@router.get(
    "/model",
    response_model=ModelInfo,
    responses={
        401: {"model": ErrorResponse, "description": "unauthorized (when an API key is set)"},
        **UNKNOWN_VERSION,
    },
)
async def model_info(service: ServiceDep, model: ModelDep) -> ModelInfo:
    """A served version's metadata: metrics, thresholds, input spec, preprocessing; and the
    versions served."""
    loaded = model.classifier.version_info
    metadata = loaded.metadata.model_dump(mode="json", exclude_none=True)
    metadata["split"] = {k: v for k, v in metadata.get("split", {}).items() if k != "ids"}
    return ModelInfo(
        name=loaded.name,
        version=loaded.version,
        default_version=service.default_version,
        versions=service.versions,
        runtime=model.classifier.runner.runtime,
        genres=loaded.genres,
        thresholds=[float(t) for t in loaded.metadata.thresholds],
        input=loaded.metadata.input,
        metadata=metadata,
    )


@router.put(
    "/admin/default-version",
    response_model=DefaultVersionChanged,
    responses={
        401: {"model": ErrorResponse, "description": "unauthorized: X-Admin-Key missing or wrong"},
        403: {"model": ErrorResponse, "description": "forbidden: POSTER_ADMIN_KEY is not set"},
        **UNKNOWN_VERSION,
    },
    tags=["admin"],
)
async def set_default_version(
    request: Request, service: ServiceDep, wanted: DefaultVersion
) -> DefaultVersionChanged:
    """Switch the version that answers requests without ?version=, at once and without a restart
    (a rollback is this switch back). Needs POSTER_ADMIN_KEY as `X-Admin-Key`; logged."""
    previous = service.set_default(wanted.version)
    logger.warning(
        "request %s: the default version is now %s (was %s), by an admin call",
        request.state.request_id,
        wanted.version,
        previous,
    )
    return DefaultVersionChanged(
        default_version=service.default_version, previous=previous, versions=service.versions
    )
