"""Who may send a poster, and whether there is room for it: decided from the request line and
headers, before a single byte of the body is read.

FastAPI reads a multipart form before it runs a route's dependencies, so a check there would let an
anonymous client make the server buffer a whole upload first. This ASGI middleware answers a POST to
the predict and explain routes at once with the JSON error (and `Connection: close`, so the unread body is not
drained) when the API key is missing or wrong, when the service is not ready or is draining, or when
the queue is already full. The service checks again per image; this is the cheap early refusal.
`/model` and `/metrics` need the key too (any method), and nothing else.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable

# The path the router matches (without a proxy's --root-path): the router's own function, so the
# admission check and the router never disagree on a path.
from starlette._utils import get_route_path
from starlette.datastructures import Headers
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from app.errors import NotReady, Overloaded, ServiceUnavailable, Unauthorized
from app.service import EXPLANATIONS_FULL, PredictionService
from poster_genres.errors import PosterGenresError

BATCH_PATH = "/predict/batch"
GUARDED_PATHS = ("/predict", BATCH_PATH, "/explain")
# Read-only routes that tell an outsider more than a client needs (the model's metrics and test
# figures; the traffic's volume and genre mix): behind the key too, when one is configured.
KEYED_PATHS = ("/model", "/metrics")


def offered_key(headers: Headers) -> str | None:
    """The key a client sent, as `X-API-Key` or `Authorization: Bearer`."""
    key = headers.get("x-api-key")
    authorization = headers.get("authorization", "")
    if key is None and authorization.lower().startswith("bearer "):
        key = authorization[7:].strip()
    return key


def key_matches(offered: str | None, expected: str) -> bool:
    return offered is not None and secrets.compare_digest(offered.encode(), expected.encode())


class AdmissionMiddleware:
    """Refuses unauthenticated or unadmittable predict requests before reading their body."""

    def __init__(
        self,
        app: ASGIApp,
        api_key: str | None,
        service: Callable[[], PredictionService | None],
        max_batch_files: int,
        respond: Callable[[Scope, PosterGenresError], Response],
    ) -> None:
        self.app = app
        self.api_key = api_key
        self.service = service
        self.max_batch_files = max_batch_files
        self.respond = respond

    def _unauthorized(self, scope: Scope) -> PosterGenresError | None:
        if self.api_key is not None and not key_matches(
            offered_key(Headers(scope=scope)), self.api_key
        ):
            return Unauthorized("A valid API key is required (X-API-Key or Authorization: Bearer).")
        return None

    def _refusal(self, scope: Scope) -> PosterGenresError | None:
        unauthorized = self._unauthorized(scope)
        if unauthorized is not None:
            return unauthorized
        service = self.service()
        if service is None:
            return NotReady("The model is not loaded yet.")
        if service.health != "ok":
            return ServiceUnavailable(f"The service is {service.health}; retry on another replica.")
        if service.saturated:
            return Overloaded("Too many images are being processed; retry shortly.")
        if get_route_path(scope) == "/explain" and service.explanations_full:
            return Overloaded(EXPLANATIONS_FULL)
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = get_route_path(scope) if scope["type"] == "http" else ""
        refusal = None
        if path in KEYED_PATHS:
            refusal = self._unauthorized(scope)
        elif path in GUARDED_PATHS and scope.get("method") == "POST":
            refusal = self._refusal(scope)
            if refusal is None and path == BATCH_PATH:
                await self._hold_batch_places(scope, receive, send)
                return
        if refusal is None:
            await self.app(scope, receive, send)
            return
        await self._refuse(scope, receive, send, refusal)

    async def _hold_batch_places(self, scope: Scope, receive: Receive, send: Send) -> None:
        """A batch holds the most places it may need before its body is read (refused at once
        when they are not free), and the route gives back the extra once the files are counted."""
        service = self.service()
        assert service is not None  # _refusal has checked
        try:
            places = service.hold_batch_places(self.max_batch_files)
        except Overloaded as refusal:
            await self._refuse(scope, receive, send, refusal)
            return
        scope.setdefault("state", {})["batch_places"] = places
        try:
            await self.app(scope, receive, send)
        finally:
            places.release()

    async def _refuse(
        self, scope: Scope, receive: Receive, send: Send, refusal: PosterGenresError
    ) -> None:
        response = self.respond(scope, refusal)
        response.headers["Connection"] = "close"
        await response(scope, receive, send)
