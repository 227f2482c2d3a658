"""FastAPI dependencies, defined once as `Annotated` aliases."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from app.config import Settings
from app.errors import NotReady
from app.service import PredictionService


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
