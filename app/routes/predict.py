"""POST /predict and POST /predict/batch."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, File, Request, UploadFile

from app.deps import ModelDep, SettingsDep, TopK
from app.errors import TooManyFiles
from app.gate import BatchPlaces
from app.schemas import BatchItem, BatchPrediction, ErrorBody, Prediction
from app.uploads import (
    OptionalPosterFile,
    Upload,
    read_one_poster,
    unless_client_leaves,
    upload_route,
)
from poster_genres.errors import PosterGenresError

router = APIRouter(tags=["predict"])


@upload_route(router, "/predict", Upload(), response_model=Prediction)
async def predict(
    request: Request, model: ModelDep, top_k: TopK, file: OptionalPosterFile = None
) -> Prediction:
    """Genre probabilities for one poster: a multipart form with field `file`, or the image itself
    as the body (`Content-Type: image/jpeg`, `image/png`, `image/webp`, `image/gif` or
    `application/octet-stream`)."""
    data = await read_one_poster(request, file)
    prediction = await unless_client_leaves(request, model.predict(data, top_k))
    request.state.top_genre = prediction.top_k[0].genre
    return prediction


@upload_route(router, "/predict/batch", Upload(batch=True), response_model=BatchPrediction)
async def predict_batch(
    request: Request,
    files: Annotated[list[UploadFile], File(description="posters, in order")],
    model: ModelDep,
    settings: SettingsDep,
    top_k: TopK,
) -> BatchPrediction:
    """One entry per file, in order: a prediction, or the error that file alone would get."""
    if len(files) > settings.max_batch_files:
        raise TooManyFiles(f"At most {settings.max_batch_files} files per request.")
    request_id = request.state.request_id

    async def one(upload: UploadFile) -> BatchItem:
        try:
            result = await model.predict(await upload.read(), top_k)
        except PosterGenresError as exc:
            request.app.state.metrics.observe_item_error("/predict/batch", exc.code)
            error = ErrorBody(code=exc.code, message=exc.message, request_id=request_id)
            return BatchItem(filename=upload.filename, error=error)
        return BatchItem(filename=upload.filename, result=result)

    places: BatchPlaces = request.state.batch_places  # held by admission, from the headers
    places.keep(len(files))
    results = await unless_client_leaves(request, asyncio.gather(*(one(f) for f in files)))
    return BatchPrediction(results=list(results))
