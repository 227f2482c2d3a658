"""FastAPI dependencies, defined once as `Annotated` aliases. Each query parameter is validated
here, in one place, and arrives in the route as a value the service can use as it is."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Query, Request

from app.config import Settings
from app.errors import InvalidParameter, NotReady
from app.service import ModelService, PredictionService


# async, so FastAPI calls them on the event loop: a plain `def` dependency costs every request a
# round trip through a worker thread (seen in bench/PROFILE.md).
async def get_app_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_service(request: Request) -> PredictionService:
    service: PredictionService | None = getattr(request.app.state, "service", None)
    if service is None:
        raise NotReady("The model is not loaded yet.")
    return service


SettingsDep = Annotated[Settings, Depends(get_app_settings)]
ServiceDep = Annotated[PredictionService, Depends(get_service)]

VersionQuery = Annotated[
    str | None,
    Query(description="a served model version (GET /model lists them); default: the default one"),
]


async def get_model(service: ServiceDep, version: VersionQuery = None) -> ModelService:
    """The version asked for with ?version=, or the default; 404 unknown_version otherwise."""
    return service.model(version)


ModelDep = Annotated[ModelService, Depends(get_model)]

TopKQuery = Annotated[int | None, Query(description="how many genres in top_k (1 to N; default 3)")]
GenreQuery = Annotated[
    str | None,
    Query(description="a genre exactly as GET /genres names it; default: the most probable"),
]


async def valid_top_k(model: ModelDep, top_k: TopKQuery = None) -> int:
    """`top_k`, or POSTER_DEFAULT_TOP_K; 1 to the number of the version's genres."""
    k = model.settings.default_top_k if top_k is None else top_k
    n = len(model.classifier.genres)
    if not 1 <= k <= n:
        raise InvalidParameter(f"top_k must be between 1 and {n}, got {k}.")
    return k


async def valid_genre(model: ModelDep, genre: GenreQuery = None) -> int | None:
    """The index of a genre named exactly as in /genres; None for "the most probable"."""
    if genre is None:
        return None
    genres = model.classifier.genres
    try:
        return genres.index(genre)
    except ValueError:
        raise InvalidParameter(
            f"Unknown genre {genre[:40]!r}; GET /genres lists the {len(genres)} names (case matters)."
        ) from None


TopK = Annotated[int, Depends(valid_top_k)]
GenreIndex = Annotated[int | None, Depends(valid_genre)]
