"""Render every error, ours and the framework's, in the one JSON error shape."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.errors import ServiceError

logger = logging.getLogger("app.errors")

_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
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
    status: int,
    code: str,
    message: str,
    request_id: str,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body = {"error": {"code": code, "message": message, "request_id": request_id}}
    return JSONResponse(body, status_code=status, headers=headers)


async def _service_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ServiceError)
    if exc.status_code >= 500:
        logger.error(
            "request %s failed: %s",
            request_id_of(request),
            exc.message,
            exc_info=exc.__cause__ or exc,
        )
    return error_response(
        exc.status_code, exc.code, exc.message, request_id_of(request), exc.headers
    )


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = _HTTP_CODES.get(exc.status_code, "http_error")
    message = exc.detail if isinstance(exc.detail, str) else code.replace("_", " ")
    return error_response(
        exc.status_code, code, message, request_id_of(request), dict(exc.headers or {}) or None
    )


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
                request_id_of(request),
            )
    first = errors[0] if errors else {}
    where = ".".join(str(p) for p in first.get("loc", ()) if p not in ("query", "body"))
    message = f"{where}: {first.get('msg', 'invalid value')}" if where else "Invalid request."
    return error_response(422, "invalid_parameter", message, request_id_of(request))


async def _unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    # Full detail goes to the log with the request id; the client never sees paths or tracebacks.
    logger.error("request %s: unexpected error", request_id_of(request), exc_info=exc)
    return error_response(
        500, "internal_error", "The server failed on this request.", request_id_of(request)
    )


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers so routes raise domain errors instead of building responses."""
    app.add_exception_handler(ServiceError, _service_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(Exception, _unexpected_error)
