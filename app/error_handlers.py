"""Render every error, ours and the framework's, in the one JSON error shape; under /v2, in the
Open Inference Protocol's (`{"error": message}`), with the same statuses and headers."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.types import Scope

from app.errors import (
    ClientDisconnected,
    Forbidden,
    InferenceFailed,
    InvalidParameter,
    MissingFile,
    NotSupported,
    Overloaded,
    PayloadTooLarge,
    ServiceUnavailable,
    TooManyFiles,
    Unauthorized,
    UnknownVersion,
    UnsupportedMediaType,
)
from app.middleware import BodyRefused
from app.open_inference import InvalidRequest, speaks_protocol
from poster_genres.errors import (
    EmptyFile,
    ImageTooLarge,
    InvalidImage,
    ModelStoreError,
    PosterGenresError,
    UnsupportedFormat,
)

logger = logging.getLogger("app.errors")

# The one table from an error class to its HTTP status; subclasses inherit their base's row
# (Overloaded, DeadlineExceeded and NotReady are ServiceUnavailable: 503).
STATUS_OF: dict[type[PosterGenresError], int] = {
    EmptyFile: 400,
    InvalidImage: 400,
    InvalidRequest: 400,
    Unauthorized: 401,
    Forbidden: 403,
    UnknownVersion: 404,
    PayloadTooLarge: 413,
    UnsupportedFormat: 415,
    UnsupportedMediaType: 415,
    ImageTooLarge: 422,
    TooManyFiles: 422,
    MissingFile: 422,
    InvalidParameter: 422,
    ClientDisconnected: 499,
    InferenceFailed: 500,
    NotSupported: 501,
    ModelStoreError: 503,
    ServiceUnavailable: 503,
}


def status_of(exc: PosterGenresError) -> int:
    """The HTTP status of an error: the table's row for its class or nearest base, else 500."""
    for cls in type(exc).__mro__:
        if cls in STATUS_OF:
            return STATUS_OF[cls]
    return 500


def headers_of(exc: PosterGenresError) -> dict[str, str] | None:
    """Headers that tell a client what to do next."""
    if isinstance(exc, ServiceUnavailable):
        return {"Retry-After": str(exc.retry_after_s)}
    if isinstance(exc, Unauthorized):
        return {"WWW-Authenticate": "Bearer"}
    return None


_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_format",
    422: "invalid_parameter",
    429: "too_many_requests",
    503: "unavailable",
}


def request_id_of(request: Request) -> str:
    return getattr(request.state, "request_id", "") or ""


def error_response(
    status: int, code: str, message: str, scope: Scope, headers: dict[str, str] | None = None
) -> JSONResponse:
    """The error answer to the request of `scope`: our shape, or the protocol's
    (`{"error": message}`) under /v2. Its code is recorded for the access log and metrics, which
    cannot read it from the protocol's body."""
    state = scope.setdefault("state", {})
    state["error_code"] = code
    error = {"code": code, "message": message, "request_id": state.get("request_id", "")}
    body: dict[str, object] = {"error": message} if speaks_protocol(scope) else {"error": error}
    return JSONResponse(body, status_code=status, headers=headers)


def domain_error_response(exc: PosterGenresError, scope: Scope) -> JSONResponse:
    """The JSON error for one of our errors, with its status and headers from the table."""
    return error_response(status_of(exc), exc.code, exc.message, scope, headers_of(exc))


async def _service_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, PosterGenresError)
    status = status_of(exc)
    if isinstance(exc, ServiceUnavailable):
        # Expected under load: one line, no traceback, so logs do not multiply exactly when the
        # service is busiest (and stay one record per line).
        logger.warning("request %s: %s %s", request_id_of(request), exc.code, exc.message)
    elif status >= 500:
        logger.error(
            "request %s failed: %s",
            request_id_of(request),
            exc.message,
            exc_info=exc.__cause__ or exc,
        )
    return domain_error_response(exc, request.scope)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    if isinstance(exc.__cause__, OSError):
        # FastAPI answers 400 to anything that fails while it reads a form, a full disk included:
        # a fault of ours, not the client's.
        logger.warning(
            "request %s: reading the body failed: %s", request_id_of(request), exc.__cause__
        )
        return domain_error_response(
            Overloaded("The server cannot hold this upload now; retry shortly."), request.scope
        )
    code = _HTTP_CODES.get(exc.status_code, "http_error")
    message = exc.detail if isinstance(exc.detail, str) else code.replace("_", " ")
    headers = dict(exc.headers or {})
    if exc.status_code == 413:
        # The rest of an oversized body is not worth reading: close instead of draining it.
        headers["Connection"] = "close"
    return error_response(exc.status_code, code, message, request.scope, headers or None)


async def _body_refused(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, BodyRefused)
    response = domain_error_response(exc.error, request.scope)
    response.headers["Connection"] = "close"  # the rest of the body is not worth reading
    return response


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = exc.errors()
    for error in errors:
        location = tuple(error.get("loc", ()))
        if location[:1] == ("body",) and error.get("type") == "missing":
            field = location[1] if len(location) > 1 else "file"
            return error_response(
                422,
                "missing_file",
                f"The multipart form has no '{field}' field.",
                request.scope,
            )
    first = errors[0] if errors else {}
    where = ".".join(str(p) for p in first.get("loc", ()) if p not in ("query", "body"))
    message = f"{where}: {first.get('msg', 'invalid value')}" if where else "Invalid request."
    return error_response(422, "invalid_parameter", message, request.scope)


async def _unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    # Full detail goes to the log with the request id; the client never sees paths or tracebacks.
    logger.error("request %s: unexpected error", request_id_of(request), exc_info=exc)
    return error_response(
        500,
        "internal_error",
        "The server failed on this request.",
        request.scope,
    )


async def _client_disconnect(request: Request, exc: Exception) -> JSONResponse:
    # The client left mid-upload: nobody will read this answer, and it is not our fault (499).
    return domain_error_response(ClientDisconnected("The client went away."), request.scope)


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers so routes raise domain errors instead of building responses."""
    app.add_exception_handler(ClientDisconnect, _client_disconnect)
    app.add_exception_handler(PosterGenresError, _service_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(BodyRefused, _body_refused)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(Exception, _unexpected_error)
