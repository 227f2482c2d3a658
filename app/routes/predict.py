"""POST /predict and POST /predict/batch."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Annotated, TypeVar

from fastapi import APIRouter, File, Query, Request, UploadFile

from app.deps import ServiceDep, SettingsDep
from app.errors import ClientDisconnected, MissingFile, TooManyFiles, UnsupportedMediaType
from app.schemas import BatchItem, BatchPrediction, ErrorBody, ErrorResponse, Prediction
from app.service import BatchPlaces
from poster_genres.errors import PosterGenresError

T = TypeVar("T")

# Authentication and admission happen before the body is read: app/admission.py.
router = APIRouter(tags=["predict"])

ERRORS = {
    status: {"model": ErrorResponse, "description": description}
    for status, description in {
        400: "empty_file or invalid_image",
        401: "unauthorized (only when an API key is configured)",
        413: "payload_too_large",
        415: "unsupported_format (the image) or unsupported_media_type (the body's Content-Type)",
        422: "missing_file, image_too_large, too_many_files or invalid_parameter",
        503: "overloaded, deadline_exceeded or draining (with Retry-After)",
    }.items()
}

TopK = Annotated[int | None, Query(description="how many genres in top_k (1 to N; default 3)")]
PosterFile = Annotated[UploadFile, File(description="a JPEG, PNG, WebP or GIF poster")]
OptionalPosterFile = Annotated[
    UploadFile | None, File(description="a JPEG, PNG, WebP or GIF poster")
]
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
    if task.cancelled():
        raise ClientDisconnected("The client went away.")
    return task.result()


# FastAPI types `responses` as dict[int | str, ...]; ours is keyed by int only.
@router.post(
    "/predict",
    response_model=Prediction,
    responses=ERRORS,  # type: ignore[arg-type]  # see above
    openapi_extra=RAW_BODY,
)
async def predict(
    request: Request, service: ServiceDep, file: OptionalPosterFile = None, top_k: TopK = None
) -> Prediction:
    """Genre probabilities for one poster: a multipart form with field `file`, or the image itself
    as the body (`Content-Type: image/jpeg`, `image/png`, `image/webp`, `image/gif` or
    `application/octet-stream`)."""
    service.check_top_k(top_k)
    data = await read_one_poster(request, file)
    prediction = await unless_client_leaves(request, service.predict(data, top_k))
    request.state.top_genre = prediction.top_k[0].genre
    return prediction


@router.post("/predict/batch", response_model=BatchPrediction, responses=ERRORS)  # type: ignore[arg-type]  # see above
async def predict_batch(
    request: Request,
    files: Annotated[list[UploadFile], File(description="posters, in order")],
    service: ServiceDep,
    settings: SettingsDep,
    top_k: TopK = None,
) -> BatchPrediction:
    """One entry per file, in order: a prediction, or the error that file alone would get."""
    service.check_top_k(top_k)
    if len(files) > settings.max_batch_files:
        raise TooManyFiles(f"At most {settings.max_batch_files} files per request.")
    request_id = request.state.request_id

    async def one(upload: UploadFile) -> BatchItem:
        try:
            result = await service.predict(await upload.read(), top_k)
        except PosterGenresError as exc:
            request.app.state.metrics.observe_item_error("/predict/batch", exc.code)
            error = ErrorBody(code=exc.code, message=exc.message, request_id=request_id)
            return BatchItem(filename=upload.filename, error=error)
        return BatchItem(filename=upload.filename, result=result)

    places: BatchPlaces = request.state.batch_places  # held by admission, from the headers
    places.keep(len(files))
    results = await unless_client_leaves(request, asyncio.gather(*(one(f) for f in files)))
    return BatchPrediction(results=list(results))
