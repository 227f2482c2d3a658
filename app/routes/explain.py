"""POST /explain: where the evidence for one genre lies in a poster."""

from __future__ import annotations

from fastapi import APIRouter, Request

from app.deps import GenreIndex, ModelDep
from app.schemas import Explanation
from app.uploads import (
    OptionalPosterFile,
    Upload,
    read_one_poster,
    unless_client_leaves,
    upload_route,
)

router = APIRouter(tags=["explain"])


@upload_route(router, "/explain", Upload(explains=True), response_model=Explanation)
async def explain(
    request: Request, model: ModelDep, genre: GenreIndex, file: OptionalPosterFile = None
) -> Explanation:
    """A heatmap of where the model found evidence for `genre` in the poster (Grad-CAM), as a grid
    and as a PNG overlay. The same upload rules, limits and errors as /predict; at most
    POSTER_MAX_EXPLANATIONS at once (beyond: 503 overloaded)."""
    data = await read_one_poster(request, file)
    return await unless_client_leaves(request, model.explain(data, genre))
