"""`python -m tests.dummy_upload_server`: the service with one more upload route, declared the way
the service's own are, with a path parameter (tests/test_uploads.py)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from pydantic import BaseModel

from app.deps import ServiceDep
from app.server import main as serve
from app.uploads import OptionalPosterFile, Upload, read_one_poster, upload_route
from poster_genres.cli import run_command

router = APIRouter(tags=["dummy"])
DUMMY_PATH = "/dummy/{name}/upload"


class DummyAnswer(BaseModel):
    name: str
    received: int


@upload_route(router, DUMMY_PATH, Upload(), response_model=DummyAnswer)
async def dummy_upload(
    request: Request, name: str, service: ServiceDep, file: OptionalPosterFile = None
) -> DummyAnswer:
    """How many bytes of poster arrived, under `name`."""
    return DummyAnswer(name=name, received=len(await read_one_poster(request, file)))


if __name__ == "__main__":
    run_command(lambda: serve([], routers=[router]))
