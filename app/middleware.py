"""Pure ASGI middleware: request ids with one structured log line each, and body-size limits."""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from collections.abc import Callable

from starlette.datastructures import Headers, MutableHeaders
from starlette.exceptions import HTTPException
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.body_budget import BodyBudget
from app.config import Settings
from app.errors import Overloaded, PayloadTooLarge
from app.units import human_bytes
from app.uploads import Upload, resolve_upload
from poster_genres.errors import PosterGenresError

access_log = logging.getLogger("app.access")
REQUEST_ID_HEADER = "X-Request-ID"
# Routes FastAPI and Starlette add without an APIRoute (no scope["route"]): labelled by path.
FRAMEWORK_PATHS = ("/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json")
MOUNTS = ("/static", "/docs-assets")


def route_label(scope: Scope) -> str:
    """The route template for logs and metrics: bounded cardinality, never a raw client path."""
    route = getattr(scope.get("route"), "path", None)
    if route:
        return str(route)
    path = scope.get("path", "")
    if path in FRAMEWORK_PATHS:
        return str(path)
    for mount in MOUNTS:
        if path.startswith(mount + "/"):
            return mount
    return "unmatched"


def error_code(body: bytes, status: int) -> str:
    """The `error.code` of one of our JSON error bodies; `http_<status>` for any other body.

    Every error the app sends is small JSON in one message, so this reads it without buffering.
    """
    try:
        code = json.loads(body)["error"]["code"]
    except (ValueError, KeyError, TypeError):
        return f"http_{status}"
    return code if isinstance(code, str) and _VALID_CODE.fullmatch(code) else f"http_{status}"


_VALID_CODE = re.compile(r"[a-z_]{1,40}")
_VALID_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")


class RequestContextMiddleware:
    """Gives every request an id (the client's, if it is safe to echo), then logs one JSON line.

    The line has the request id, method, route, status, latency and the top genre when there is
    one; never the image bytes.
    """

    def __init__(
        self, app: ASGIApp, observe: Callable[[str, int, float, str | None], None] | None = None
    ) -> None:
        self.app = app
        self.observe = observe

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        offered = Headers(scope=scope).get(REQUEST_ID_HEADER, "")
        request_id = offered if _VALID_REQUEST_ID.fullmatch(offered) else uuid.uuid4().hex
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        started = time.perf_counter()
        status = 500
        code: str | None = None

        async def send_with_id(message: Message) -> None:
            nonlocal status, code
            if message["type"] == "http.response.start":
                status = message["status"]
                MutableHeaders(scope=message)[REQUEST_ID_HEADER] = request_id
            elif status >= 400 and code is None:
                code = state.get("error_code") or error_code(message.get("body", b""), status)
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - started
            route = route_label(scope)
            if self.observe is not None:
                self.observe(
                    route, status, elapsed, code or (f"http_{status}" if status >= 400 else None)
                )
            record = {
                "request_id": request_id,
                "method": scope.get("method"),
                "route": route,
                "status": status,
                "latency_ms": round(elapsed * 1000, 2),
            }
            if state.get("top_genre"):
                record["top_genre"] = state["top_genre"]
            access_log.info(json.dumps(record))


def body_limit_message(limit: int) -> str:
    return f"The request body is larger than the limit of {human_bytes(limit)}."


BUDGET_MESSAGE = "Too many uploads are in progress; retry shortly."


class BodyRefused(HTTPException):
    """Raised from inside `receive` when a streamed body passes its limit or the budget. An
    HTTPException, because FastAPI turns any other exception raised while it parses a form into
    400; the app's handler for this class answers with `error`."""

    def __init__(self, error: PosterGenresError) -> None:
        super().__init__(413 if isinstance(error, PayloadTooLarge) else 503, error.message)
        self.error = error


class BodyLimitMiddleware:
    """Request bodies are bounded one by one (by upload route, `app.uploads`) and all together
    (`BodyBudget`), while streaming, with or without Content-Length.

    A declared Content-Length over the limit (413 `payload_too_large`) or beyond what the budget
    has left (503 `overloaded`) is answered before any of the body is read, and the connection
    closed; otherwise reading stops at the first chunk past either.
    """

    def __init__(
        self,
        app: ASGIApp,
        settings: Settings,
        budget: BodyBudget,
        respond: Callable[[Scope, PosterGenresError], Response],
    ) -> None:
        self.app = app
        self.settings = settings
        self.budget = budget
        self.respond = respond

    def _upload(self, scope: Scope) -> Upload:
        """The declared upload route's declaration; a poster route's for any other route."""
        return resolve_upload(scope) or Upload()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        upload = self._upload(scope)
        limit = upload.body_limit(self.settings)
        declared = Headers(scope=scope).get("content-length", "")
        charged = 0
        if declared.isdigit():
            if int(declared) > limit:
                await self._reject(scope, receive, send, PayloadTooLarge(body_limit_message(limit)))
                return
            cost = self.budget.try_charge(int(declared), upload.body_copies)
            if cost is None:
                await self._reject(scope, receive, send, Overloaded(BUDGET_MESSAGE))
                return
            charged = cost
        received = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal received, charged
            message = await receive()
            if message["type"] == "http.request":
                size = len(message.get("body", b""))
                received += size
                if received > limit:
                    raise BodyRefused(PayloadTooLarge(body_limit_message(limit)))
                if not declared.isdigit() and size:
                    cost = self.budget.try_charge(size, upload.body_copies)
                    if cost is None:
                        raise BodyRefused(Overloaded(BUDGET_MESSAGE))
                    charged += cost
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except BodyRefused as refused:
            if started:
                raise
            await self._reject(scope, receive, send, refused.error)
        finally:
            if charged:
                self.budget.release(charged)

    async def _reject(
        self, scope: Scope, receive: Receive, send: Send, error: PosterGenresError
    ) -> None:
        response = self.respond(scope, error)
        response.headers["Connection"] = "close"  # the rest of the body is not worth reading
        await response(scope, receive, send)
