"""The prediction pipeline on its own: work for a client that left stops before decoding."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from pathlib import Path

import numpy as np
import pytest

import app.service as service_module
from app.metrics import ServiceMetrics
from app.service import PredictionService
from tests.conftest import make_settings


class FakeClassifier:
    """Enough of GenreClassifier for the pipeline: one genre, one batch size."""

    max_batch = 1
    buckets = (1,)
    genres = ("a",)

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
    real = service_module.decode_poster

    def recording(data: bytes, **options: object) -> object:
        decoded.append(data)
        release.wait(5)
        return real(data, **options)  # type: ignore[arg-type]  # options pass through

    monkeypatch.setattr(service_module, "decode_poster", recording)

    async def scenario() -> None:
        settings = make_settings(tiny_store, decode_workers=1)
        service = PredictionService(FakeClassifier(), settings, ServiceMetrics(), FakeExplainer())  # type: ignore[arg-type]  # stand-ins
        await service.start()
        first = asyncio.ensure_future(service.predict(b"first", 1))
        await asyncio.sleep(0.2)  # `first` holds the only decode slot
        second = asyncio.ensure_future(service.predict(b"second", 1))
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
