"""Upload routes, declared once: `@upload_route(router, path, Upload(...))` registers the route
with FastAPI and records what it takes, and that one declaration drives

- admission (`app.admission`): the key, readiness and room are checked before the body is read,
  with a batch's queue places held from its headers;
- body limits (`app.middleware.BodyLimitMiddleware`): a batch's limit or a poster's, enforced from
  Content-Length before any body byte;
- the OpenAPI description (`app.openapi`): a required, non-empty poster (or 1 to
  POSTER_MAX_BATCH_FILES of them), as a form or as the raw body.

Both middleware find a request's declaration with `resolve_upload`, which matches paths as the
router does (starlette's compiled path templates, against the path without a proxy's root path),
so path parameters and a root path resolve the same way everywhere.

Also here, shared by every upload route: reading the poster from either kind of body, and
cancelling work whose client has left.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, File, Request, UploadFile
from starlette._utils import get_route_path
from starlette.routing import compile_path
from starlette.types import Scope

from app.config import Settings
from app.errors import ClientDisconnected, MissingFile, TooManyFiles, UnsupportedMediaType
from app.schemas import ErrorResponse, ProtocolError

T = TypeVar("T")
Endpoint = Callable[..., Awaitable[Any]]


@dataclass(frozen=True)
class Upload:
    """What an upload route takes. `batch`: several posters in the multipart field `files`, under
    the batch body limit, holding batch queue places from the headers; otherwise one poster, as
    the multipart field `file` or as the raw body. `explains`: an explanation, admitted only while
    explanations have room. `open_inference`: a protocol infer request (app/open_inference.py),
    its posters in JSON or binary tensor data; with `batch`, as many as a batch."""

    batch: bool = False
    explains: bool = False
    open_inference: bool = False

    def body_limit(self, settings: Settings) -> int:
        return settings.max_batch_upload_bytes if self.batch else settings.max_upload_bytes

    @property
    def body_copies(self) -> int:
        """What parsing the body holds at once, in copies of it: the body and the posters cut
        from it; a protocol body in JSON also its text and the posters' base64."""
        return 3 if self.open_inference else 2


def error_responses(
    model: type[ErrorResponse | ProtocolError], descriptions: dict[int, str]
) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for error statuses, each with its body model and description."""
    return {status: {"model": model, "description": d} for status, d in descriptions.items()}


ERRORS = error_responses(
    ErrorResponse,
    {
        400: "empty_file or invalid_image",
        401: "unauthorized (only when an API key is configured)",
        413: "payload_too_large",
        415: "unsupported_format (the image) or unsupported_media_type (the body's Content-Type)",
        404: "unknown_version: ?version= names a version not served",
        422: "missing_file, image_too_large, too_many_files or invalid_parameter",
        503: "overloaded, deadline_exceeded or draining (with Retry-After)",
    },
)
# The protocol's infer routes: the same statuses, in its error shape.
PROTOCOL_ERRORS = error_responses(
    ProtocolError,
    {
        400: "a request the protocol or the model cannot take, or a poster that is not an image",
        401: "unauthorized (only when an API key is configured)",
        404: "an unknown model or version",
        413: "payload_too_large",
        415: "unsupported_format",
        422: "too many posters, or one too large",
        503: "overloaded, deadline_exceeded or draining (with Retry-After)",
    },
)
# Content types of a raw upload (the body is the image itself); the bytes decide the format.
RAW_TYPES = ("image/jpeg", "image/png", "image/webp", "image/gif", "application/octet-stream")
RAW_BODY = {
    "requestBody": {
        "content": {
            kind: {"schema": {"type": "string", "format": "binary", "minLength": 1}}
            for kind in RAW_TYPES
        }
    }
}


@dataclass(frozen=True)
class DeclaredUpload:
    """An upload route as declared: its path template (as OpenAPI lists it) and what it takes."""

    path: str
    upload: Upload
    pattern: re.Pattern[str]


_DECLARED: dict[str, DeclaredUpload] = {}
_RESOLVED = "upload_route"  # where a request's resolved declaration is kept in its scope state


def upload_route(
    router: APIRouter, path: str, upload: Upload, **route: Any
) -> Callable[[Endpoint], Endpoint]:
    """Register the decorated endpoint as POST `path` on `router` (FastAPI's `route` arguments
    pass through), with the upload errors, and the raw body for single-poster routes. The router
    must be included in the app without a prefix of its own."""

    def register(endpoint: Endpoint) -> Endpoint:
        full_path = router.prefix + path
        pattern, path_format, _ = compile_path(full_path)  # the router's own path matching
        _DECLARED[path_format] = DeclaredUpload(path_format, upload, pattern)
        router.add_api_route(
            path,
            endpoint,
            methods=["POST"],
            responses=PROTOCOL_ERRORS if upload.open_inference else ERRORS,
            openapi_extra=None if upload.batch or upload.open_inference else RAW_BODY,
            **route,
        )
        return endpoint

    return register


def declared_uploads() -> list[DeclaredUpload]:
    """Every upload route declared so far."""
    return list(_DECLARED.values())


def resolve_upload(scope: Scope) -> Upload | None:
    """The declaration of the upload route this request is for, or None. Paths are matched as
    the router matches them: the path without a proxy's root path, against each declared route's
    compiled template (resolved once per request)."""
    state = scope.setdefault("state", {})
    if _RESOLVED in state:
        resolved: Upload | None = state[_RESOLVED]
        return resolved
    upload = None
    if scope.get("method") == "POST":
        path = get_route_path(scope)
        upload = next((d.upload for d in _DECLARED.values() if d.pattern.match(path)), None)
    state[_RESOLVED] = upload
    return upload


OptionalPosterFile = Annotated[
    UploadFile | None, File(description="a JPEG, PNG, WebP or GIF poster")
]


def _media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


async def read_one_poster(request: Request, file: UploadFile | None) -> bytes:
    """The poster's bytes: the raw body when its Content-Type is an image type, else the one
    multipart field `file`. Any other declared type (a PDF, JSON) is refused with 415."""
    kind = _media_type(request)
    if kind in RAW_TYPES:
        return await request.body()
    if kind and kind != "multipart/form-data":
        accepted = ", ".join(("multipart/form-data", *RAW_TYPES))
        raise UnsupportedMediaType(f"Content-Type {kind[:60]!r} is not accepted; use {accepted}.")
    if file is None:
        raise MissingFile(
            "Send the poster as a multipart form field 'file', or as the body with an image "
            "Content-Type."
        )
    if len((await request.form()).getlist("file")) > 1:
        raise TooManyFiles(f"{request.url.path} takes one file; send several to /predict/batch.")
    return await file.read()


async def _client_gone(request: Request) -> None:
    # The body has been read, so the next ASGI message is the disconnect (or the end of the exchange).
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def unless_client_leaves(request: Request, work: Awaitable[T]) -> T:
    """Run `work`, cancelling it if the client disconnects first, so the model skips its image."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_client_gone(request))
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
        if not task.done():  # the client left, or this request itself was cancelled
            task.cancel()
            # A task is cancelled only once the loop has run it again; until then `cancelled()`
            # is False and `result()` raises InvalidStateError (a 500 instead of the 499).
            await asyncio.wait({task})
    # A gather cancelled from outside keeps its CancelledError as an exception on Python 3.11
    # rather than counting as cancelled: either way, the client left.
    if task.cancelled() or isinstance(task.exception(), asyncio.CancelledError):
        raise ClientDisconnected("The client went away.")
    return task.result()
