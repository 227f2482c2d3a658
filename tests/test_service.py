"""The prediction pipeline on its own: work for a client that left stops before decoding."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from pathlib import Path

import numpy as np
import pytest

import poster_genres.pipeline as pipeline_module
from app.metrics import ServiceMetrics
from app.service import PredictionService
from tests.conftest import make_settings


class FakeClassifier:
    """Enough of GenreClassifier for the pipeline: one genre, one batch size."""

    max_batch = 1
    buckets = (1,)
    genres = ("a",)
    runtime = "litert"
    version = "fake"
    name = "poster-genres"

    class runner:  # named as the attribute of GenreClassifier
        parallel = 1

    @staticmethod
    def predict(batch: np.ndarray) -> np.ndarray:
        return np.zeros((len(batch), 1), dtype=np.float32)


class FakeExplainer:
    @staticmethod
    def warm_up() -> None:
        pass


def test_a_request_cancelled_while_waiting_for_a_decode_slot_is_never_decoded(
    tiny_store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    decoded: list[bytes] = []
    release = threading.Event()
    real = pipeline_module.decode_poster

    def recording(data: bytes, **options: object) -> object:
        decoded.append(data)
        release.wait(5)
        return real(data, **options)  # type: ignore[arg-type]  # options pass through

    monkeypatch.setattr(pipeline_module, "decode_poster", recording)

    async def scenario() -> None:
        settings = make_settings(tiny_store, decode_workers=1)
        service = PredictionService(
            [FakeClassifier()], [FakeExplainer()], settings, ServiceMetrics()
        )  # type: ignore[list-item]  # stand-ins
        await service.start()
        first = asyncio.ensure_future(service.default.predict(b"first", 1))
        await asyncio.sleep(0.2)  # `first` holds the only decode slot
        second = asyncio.ensure_future(service.default.predict(b"second", 1))
        await asyncio.sleep(0.2)
        second.cancel()  # what unless_client_leaves does when the client goes away
        release.set()
        with contextlib.suppress(Exception):
            await first  # b"first" is no image: its InvalidImage is not the point here
        with contextlib.suppress(asyncio.CancelledError):
            await second
        await service.stop()

    asyncio.run(scenario())
    assert decoded == [b"first"]


def test_a_client_leaving_while_its_work_runs_is_client_disconnected_not_a_crash() -> None:
    """unless_client_leaves: the disconnect arrives while the work is still running; the work is
    cancelled (its cleanup runs) and the route raises ClientDisconnected (499), never the
    InvalidStateError of asking a just-cancelled task for its result."""
    from app.errors import ClientDisconnected
    from app.uploads import unless_client_leaves

    cleaned: list[bool] = []

    class LeavingRequest:
        @staticmethod
        async def receive() -> dict[str, str]:
            await asyncio.sleep(0.05)
            return {"type": "http.disconnect"}

    async def slow_work() -> str:
        try:
            await asyncio.sleep(5)
            return "done"
        finally:
            cleaned.append(True)

    async def scenario() -> None:
        with pytest.raises(ClientDisconnected):
            await unless_client_leaves(LeavingRequest(), slow_work())  # type: ignore[arg-type]  # a stand-in

    asyncio.run(scenario())
    assert cleaned == [True]


def test_a_client_leaving_while_a_batch_gathers_is_client_disconnected_not_a_crash() -> None:
    """The batch routes wait on asyncio.gather, which on Python 3.11 keeps a CancelledError as
    its exception instead of counting as cancelled: still a 499, never a bare CancelledError."""
    from app.errors import ClientDisconnected
    from app.uploads import unless_client_leaves

    class LeavingRequest:
        @staticmethod
        async def receive() -> dict[str, str]:
            await asyncio.sleep(0.05)
            return {"type": "http.disconnect"}

    async def scenario() -> None:
        with pytest.raises(ClientDisconnected):
            work = asyncio.gather(asyncio.sleep(5), asyncio.sleep(5), return_exceptions=True)
            await unless_client_leaves(LeavingRequest(), work)  # type: ignore[arg-type]  # a stand-in

    asyncio.run(scenario())


def test_a_model_the_explainer_cannot_read_still_serves_predictions(
    tiny_store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fastapi.testclient import TestClient

    from app.main import create_app
    from poster_genres.classifier import GenreClassifier
    from tests.conftest import poster_bytes

    def refuse(self: object) -> None:
        raise ValueError("no spatial feature map to explain")

    monkeypatch.setattr(GenreClassifier, "explainer", refuse)
    with TestClient(create_app(make_settings(tiny_store))) as client:
        poster = {"file": ("p.jpg", poster_bytes())}
        assert client.post("/predict", files=poster).status_code == 200
        answer = client.post("/explain", files=poster)
        assert answer.status_code == 501
        assert answer.json()["error"]["code"] == "not_supported"
