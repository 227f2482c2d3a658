"""GET /genres and GET /model: what the loaded model knows."""

from __future__ import annotations

from fastapi import APIRouter

from app.deps import ServiceDep
from app.schemas import ErrorResponse, GenresResponse, ModelInfo

router = APIRouter(tags=["model"])


@router.get("/genres", response_model=GenresResponse)
async def genres(service: ServiceDep) -> GenresResponse:
    """The genres in model output order, with each one's decision threshold, and the decision
    rule in plain words."""
    return service.genres()


@router.get(
    "/model",
    response_model=ModelInfo,
    responses={
        401: {"model": ErrorResponse, "description": "unauthorized (when an API key is set)"}
    },
)
async def model_info(service: ServiceDep) -> ModelInfo:
    """The served model's metadata: version, metrics, thresholds, input spec, preprocessing."""
    loaded = service.classifier.version_info
    metadata = loaded.metadata.model_dump(mode="json", exclude_none=True)
    metadata["split"] = {k: v for k, v in metadata.get("split", {}).items() if k != "ids"}
    return ModelInfo(
        name=loaded.name,
        version=loaded.version,
        runtime=service.classifier.runner.runtime,
        genres=loaded.genres,
        thresholds=[float(t) for t in loaded.metadata.thresholds],
        input=loaded.metadata.input,
        metadata=metadata,
    )
