"""POST /explain: where the evidence for one genre lies in a poster."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request

from app.deps import ServiceDep
from app.routes.predict import (
    ERRORS,
    RAW_BODY,
    OptionalPosterFile,
    read_one_poster,
    unless_client_leaves,
)
from app.schemas import Explanation

router = APIRouter(tags=["explain"])

Genre = Annotated[
    str | None,
    Query(description="a genre exactly as GET /genres names it; default: the most probable"),
]


@router.post(
    "/explain",
    response_model=Explanation,
    responses=ERRORS,  # type: ignore[arg-type]  # keyed by int only, as in predict.py
    openapi_extra=RAW_BODY,
)
async def explain(
    request: Request, service: ServiceDep, file: OptionalPosterFile = None, genre: Genre = None
) -> Explanation:
    """A heatmap of where the model found evidence for `genre` in the poster (Grad-CAM), as a grid
    and as a PNG overlay. The same upload rules, limits and errors as /predict; at most
    POSTER_MAX_EXPLANATIONS at once (beyond: 503 overloaded)."""
    service.check_genre(genre)
    data = await read_one_poster(request, file)
    return await unless_client_leaves(request, service.explain(data, genre))
