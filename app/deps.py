"""FastAPI dependencies, defined once as `Annotated` aliases."""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import Depends, Header, Request

from app.config import Settings
from app.errors import NotReady, Unauthorized
from app.service import PredictionService


def get_app_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_service(request: Request) -> PredictionService:
    service: PredictionService | None = getattr(request.app.state, "service", None)
    if service is None:
        raise NotReady("The model is not loaded yet.")
    return service


SettingsDep = Annotated[Settings, Depends(get_app_settings)]
ServiceDep = Annotated[PredictionService, Depends(get_service)]


def require_api_key(
    settings: SettingsDep,
    x_api_key: Annotated[str | None, Header(include_in_schema=False)] = None,
    authorization: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> None:
    """When an API key is configured, accept it as `X-API-Key` or `Authorization: Bearer`."""
    if settings.api_key is None:
        return
    offered = x_api_key
    if offered is None and authorization and authorization.lower().startswith("bearer "):
        offered = authorization[7:].strip()
    expected = settings.api_key.get_secret_value().encode()
    if offered is None or not secrets.compare_digest(offered.encode(), expected):
        raise Unauthorized("A valid API key is required (X-API-Key or Authorization: Bearer).")
