"""POST /explain against a tiny trained model: the answer's shape, the upload contract, bounds."""

from __future__ import annotations

import asyncio
import base64
import io
import threading
from pathlib import Path

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from app.main import create_app
from app.time_share import TimeShare
from poster_genres.artifact import load_version
from poster_genres.explain import GenreExplainer
from poster_genres.heatmap import MAX_OVERLAY_SIDE, overlay
from poster_genres.preprocessing import decode_poster, to_model_pixels
from tests.conftest import TINY_GENRES, make_settings, poster_bytes
from tests.test_api import assert_error, predict

POSTER = poster_bytes((200, 30, 30), square=True)
TALL = poster_bytes((30, 90, 200), size=(300, 450))


def explain(client: TestClient, data: bytes = POSTER, **params: object) -> httpx.Response:
    return client.post("/explain", files={"file": ("p.jpg", data, "image/jpeg")}, params=params)


def png(body: dict[str, object]) -> Image.Image:
    image = Image.open(io.BytesIO(base64.b64decode(str(body["overlay_png"]))))
    assert image.format == "PNG"
    return image


def test_the_default_genre_is_the_top_one_with_its_probability(client: TestClient) -> None:
    answer = explain(client)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    prediction = predict(client).json()
    assert body["genre"] == prediction["top_k"][0]["genre"]
    assert body["probability"] == pytest.approx(prediction["top_k"][0]["probability"], abs=2e-4)
    assert body["predicted"] == (body["genre"] in [p["genre"] for p in prediction["predicted"]])
    assert body["method"] == "cam"  # the tiny version serves under LiteRT: CAM from its maps
    assert (body["model"], body["version"]) == (prediction["model"], prediction["version"])


def test_the_grid_is_the_feature_map_in_unit_range(client: TestClient, tiny_version: Path) -> None:
    grid = np.array(explain(client).json()["grid"])
    rows, cols = GenreExplainer(load_version(tiny_version)).grid_shape
    assert grid.shape == (rows, cols) and rows >= 4
    assert grid.min() >= 0.0 and grid.max() <= 1.0
    assert grid.max() in (0.0, 1.0)  # scaled to the strongest cell, or no evidence at all


def test_every_genre_can_be_asked_for_and_maps_differ(client: TestClient) -> None:
    maps = {}
    for genre in TINY_GENRES:
        body = explain(client, genre=genre).json()
        assert body["genre"] == genre
        maps[genre] = body["grid"]
    assert len({str(m) for m in maps.values()}) > 1


@pytest.mark.parametrize("genre", ["nope", "drama", "", "Drama "])
def test_an_unknown_genre_is_422_invalid_parameter(client: TestClient, genre: str) -> None:
    assert_error(explain(client, genre=genre), 422, "invalid_parameter")


def test_the_overlay_keeps_the_poster_shape_under_512_pixels(client: TestClient) -> None:
    body = explain(client, TALL).json()
    image = png(body)
    assert image.size == (body["overlay_width"], body["overlay_height"]) == (300, 450)
    large = poster_bytes((30, 90, 200), size=(1200, 1800))
    body = explain(client, large).json()
    assert png(body).size == (341, 512)
    assert body["image"] == {"width": 1200, "height": 1800, "format": "JPEG"}


def test_the_overlay_is_the_grid_stretched_over_the_poster() -> None:
    poster = Image.new("RGB", (200, 300), (128, 128, 128))
    grid = np.zeros((4, 4), dtype=np.float32)
    grid[0, 0] = 1.0  # evidence only in the top-left cell
    drawn = np.asarray(overlay(poster, grid), dtype=np.int16)
    assert drawn.shape == (300, 200, 3)
    top_left, bottom_right = drawn[10, 10], drawn[290, 190]
    assert top_left.sum() > bottom_right.sum() + 150  # bright where the evidence is
    assert np.all(bottom_right < 128)  # dimmed where there is none
    assert max(overlay(poster.resize((2000, 600)), grid).size) == MAX_OVERLAY_SIDE


@pytest.mark.parametrize(
    ("data", "status", "code"),
    [
        (b"", 400, "empty_file"),
        (b"<html>", 400, "invalid_image"),
        (poster_bytes(size=(20, 20), fmt="TIFF"), 415, "unsupported_format"),
    ],
    ids=["empty", "html", "tiff"],
)
def test_bad_uploads_get_the_error_contract(
    client: TestClient, data: bytes, status: int, code: str
) -> None:
    assert_error(explain(client, data), status, code)
    assert explain(client).status_code == 200


def test_missing_and_extra_files_and_raw_bodies(client: TestClient) -> None:
    assert_error(client.post("/explain"), 422, "missing_file")
    two = [("file", ("a.jpg", POSTER, "image/jpeg")), ("file", ("b.jpg", POSTER, "image/jpeg"))]
    assert_error(client.post("/explain", files=two), 422, "too_many_files")
    raw = client.post("/explain", content=POSTER, headers={"Content-Type": "image/jpeg"})
    assert raw.status_code == 200 and raw.json()["grid"] == explain(client).json()["grid"]


def test_limits_and_the_key_are_those_of_predict(tiny_store: Path) -> None:
    app = create_app(
        make_settings(
            tiny_store, max_upload_bytes=2000, max_image_pixels=1000, api_key="s3cret-of-16-chars"
        )
    )
    key = {"X-API-Key": "s3cret-of-16-chars"}
    with TestClient(app) as secured:
        assert_error(explain(secured), 401, "unauthorized")
        big = secured.post(
            "/explain", content=b"x" * 2001, headers={**key, "Content-Type": "image/png"}
        )
        assert_error(big, 413, "payload_too_large")
        small = poster_bytes(size=(40, 40))
        answer = secured.post("/explain", files={"file": ("p.jpg", small)}, headers=key)
        assert_error(answer, 422, "image_too_large")


def test_explanations_beyond_their_share_are_refused_at_once(
    tiny_store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import app.service

    app_ = create_app(make_settings(tiny_store, max_explanations=1))
    with TestClient(app_) as one:
        service = app_.state.service
        service.gate._explain_time = TimeShare(1.0, burst_s=3600)  # only the concurrency cap here
        release = threading.Event()
        real = app.service.render_overlay

        def slow(*args: object) -> object:  # held while drawing, after the model's part
            release.wait(10)
            return real(*args)  # type: ignore[arg-type]  # arguments pass through

        monkeypatch.setattr(app.service, "render_overlay", slow)
        try:
            with_portal = one.portal  # the app's own event loop
            first = with_portal.start_task_soon(
                lambda: asyncio.wait_for(service.default.explain(POSTER, None), 20)
            )
            for _ in range(200):
                if service.gate.explanations_full:
                    break
                threading.Event().wait(0.01)
            assert service.gate.explanations_full
            assert_error(explain(one), 503, "overloaded")
            assert predict(one).status_code == 200  # /predict goes on meanwhile
        finally:
            release.set()
        assert first.result(20).genre in TINY_GENRES
        assert explain(one).status_code == 200


def test_explanations_past_their_share_of_the_time_wait_for_it(tiny_store: Path) -> None:
    """Two at a time, 80 ms each, was 25 explanations a second: predictions fell to half."""
    now = [0.0]
    app = create_app(make_settings(tiny_store))
    with TestClient(app) as client:
        service = app.state.service
        service.gate._explain_time = TimeShare(0.2, burst_s=1e-9, clock=lambda: now[0])
        assert explain(client).status_code == 200
        owed = service.gate._explain_time._owed
        assert owed > 0  # the explanation's duration
        refused = explain(client)
        assert_error(refused, 503, "overloaded")
        assert "share of the service's time" in refused.json()["error"]["message"]
        assert refused.headers["Retry-After"] == "1"
        assert predict(client).status_code == 200  # /predict goes on meanwhile
        now[0] += owed / 0.2  # paid back at 0.2 s a second
        assert explain(client).status_code == 200


def test_time_share_pays_back_at_its_share_and_allows_a_burst() -> None:
    now = [0.0]
    share = TimeShare(0.25, burst_s=1.0, clock=lambda: now[0])
    share.spend(0.9)
    assert share.available()  # 0.9 owed: within the burst
    share.spend(0.2)
    assert not share.available()  # 1.1 owed
    now[0] += 0.3  # 0.075 paid back: 1.025 owed
    assert not share.available()
    now[0] += 0.2  # 0.05 more: 0.975
    assert share.available()
    now[0] += 100
    share.spend(0.0)
    assert share._owed == 0.0  # never below nothing: idle time is not saved up


def test_the_explainer_reads_the_same_pixels_and_probabilities_as_predict(
    client: TestClient, tiny_version: Path
) -> None:
    loaded = load_version(tiny_version)
    pixels = to_model_pixels(decode_poster(TALL).image)
    genre_map = GenreExplainer(loaded).explain(pixels)
    over_http = [p["probability"] for p in predict(client, TALL).json()["probabilities"]]
    assert [round(float(p), 4) for p in genre_map.probabilities] == pytest.approx(
        over_http, abs=2e-4
    )
    assert genre_map.genre_index == int(np.argmax(genre_map.probabilities))
