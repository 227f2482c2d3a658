"""Who may send a poster, and whether there is room for it: decided from the request line and
headers, before a single byte of the body is read.

FastAPI reads a multipart form before it runs a route's dependencies, so a check there would let an
anonymous client make the server buffer a whole upload first. This ASGI middleware answers a
request to any upload route (`app.uploads`) at once with the JSON error (and `Connection: close`,
so the unread body is not drained) when the API key is missing or wrong, or when the gate
(`app.gate`) refuses: the service is not ready or is draining, or there is no room.
The service checks again per image; this is the cheap early refusal.
`/model` and `/metrics` need the key too (any method); `/admin/*` needs the admin key.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable

# The path the router matches (without a proxy's --root-path): the router's own function.
from starlette._utils import get_route_path
from starlette.datastructures import Headers
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from app.errors import Forbidden, NotReady, Overloaded, Unauthorized
from app.service import PredictionService
from app.uploads import Upload, resolve_upload
from poster_genres.errors import PosterGenresError

# Read-only routes that tell an outsider more than a client needs (the model's metrics and test
# figures; the traffic's volume and genre mix): behind the key too, when one is configured.
KEYED_PATHS = ("/model", "/metrics")
# Calls that change the service (switching the default version): their own key, X-Admin-Key, so
# that a client's key cannot; refused outright when no admin key is configured.
ADMIN_PREFIX = "/admin/"


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
    """Refuses unauthenticated or unadmittable uploads before reading their body: the routes
    declared with `app.uploads.upload_route`, found as the router finds them."""

    def __init__(
        self,
        app: ASGIApp,
        api_key: str | None,
        admin_key: str | None,
        service: Callable[[], PredictionService | None],
        max_batch_files: int,
        respond: Callable[[Scope, PosterGenresError], Response],
    ) -> None:
        self.app = app
        self.api_key = api_key
        self.admin_key = admin_key
        self.service = service
        self.max_batch_files = max_batch_files
        self.respond = respond

    def _unauthorized(self, scope: Scope) -> PosterGenresError | None:
        if self.api_key is not None and not key_matches(
            offered_key(Headers(scope=scope)), self.api_key
        ):
            return Unauthorized("A valid API key is required (X-API-Key or Authorization: Bearer).")
        return None

    def _not_admin(self, scope: Scope) -> PosterGenresError | None:
        if self.admin_key is None:
            return Forbidden("Admin calls are off; set POSTER_ADMIN_KEY to allow them.")
        if not key_matches(Headers(scope=scope).get("x-admin-key"), self.admin_key):
            return Unauthorized("A valid admin key is required (X-Admin-Key).")
        return None

    def _refusal(self, scope: Scope, upload: Upload) -> PosterGenresError | None:
        unauthorized = self._unauthorized(scope)
        if unauthorized is not None:
            return unauthorized
        service = self.service()
        if service is None:
            return NotReady("The model is not loaded yet.")
        return service.gate.refusal(explains=upload.explains)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refusal = None
        upload = resolve_upload(scope)
        if upload is not None:
            refusal = self._refusal(scope, upload)
            if refusal is None and upload.batch:
                # A protocol request may carry one poster: it holds one, then what it carries.
                held = 1 if upload.open_inference else self.max_batch_files
                await self._hold_batch_places(scope, receive, send, held)
                return
        elif get_route_path(scope) in KEYED_PATHS:
            refusal = self._unauthorized(scope)
        elif get_route_path(scope).startswith(ADMIN_PREFIX) and scope.get("method") == "PUT":
            refusal = self._not_admin(scope)
        if refusal is None:
            await self.app(scope, receive, send)
            return
        await self._refuse(scope, receive, send, refusal)

    async def _hold_batch_places(
        self, scope: Scope, receive: Receive, send: Send, held: int
    ) -> None:
        """A batch holds the most places it may need before its body is read (refused at once
        when they are not free), and the route gives back the extra once the files are counted."""
        service = self.service()
        assert service is not None  # _refusal has checked
        try:
            places = service.gate.hold_batch_places(held)
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
