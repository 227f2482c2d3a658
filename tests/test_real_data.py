"""The real dataset and the shipped model. Skipped without ../shared; required when CI=true."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.config import PROJECT_ROOT, Settings
from app.main import create_app
from poster_genres.artifact import resolve_version_dir
from training.dataset import load_labels
from training.evaluate import evaluate

pytestmark = pytest.mark.real_data

REAL_GENRES = [
    "Action", "Adventure", "Animation", "Biography", "Comedy", "Crime", "Documentary", "Drama",
    "Family", "Fantasy", "History", "Horror", "Music", "Musical", "Mystery", "N/A", "News",
    "Reality-TV", "Romance", "Sci-Fi", "Short", "Sport", "Thriller", "War", "Western",
]  # fmt: skip


@pytest.fixture(scope="module")
def shipped() -> Path:
    return resolve_version_dir(PROJECT_ROOT / "model_store", "poster-genres", None)


def test_real_csv_parses_to_unique_posters_and_header_genres(real_data: Path) -> None:
    table = load_labels(real_data / "train.csv")
    assert len(table.ids) == 6119
    assert table.genres == REAL_GENRES
    assert len(table.merged_duplicates) == 11


@pytest.mark.slow  # the whole test split, 914 posters: ~25 s under LiteRT on an AVX2 CPU
def test_shipped_model_reproduces_its_recorded_test_metrics(real_data: Path, shipped: Path) -> None:
    """Under LiteRT (auto: the version has a checked model.tflite), the model card's figures,
    recorded under Keras, hold within 1e-3."""
    result, prior = evaluate(shipped, real_data / "Images", real_data / "train.csv", split="test")
    recorded = json.loads((shipped / "metadata.json").read_text())["metrics"]["test"]
    assert result["n_images"] == recorded["model"]["n_images"]
    for key in ("mAP", "micro_AP", "macro_AUC", "micro_F1", "macro_F1", "precision_at_3", "brier"):
        assert result[key] == pytest.approx(recorded["model"][key], abs=1e-3), key
        assert prior[key] == pytest.approx(recorded["label_prior"][key], abs=1e-3), key


@pytest.fixture(scope="module")
def shipped_client(shipped: Path) -> Iterator[TestClient]:
    app = create_app(Settings(max_batch_size=4, log_level="WARNING"))
    with TestClient(app) as client:
        yield client


def test_shipped_model_answers_real_posters(
    real_data: Path, shipped: Path, shipped_client: TestClient
) -> None:
    for poster in sorted((real_data / "Images").glob("*.jpg"))[:5]:
        response = shipped_client.post(
            "/predict", files={"file": (poster.name, poster.read_bytes())}
        )
        assert response.status_code == 200
        body = response.json()
        assert body["version"] == shipped.name
        assert [p["genre"] for p in body["probabilities"]] == REAL_GENRES
        assert body["image"]["format"] == "JPEG"
        # The shipped rule: every predictable genre at or above the one shared threshold.
        listed = shipped_client.get("/genres").json()
        assert listed["rule"]["kind"] == "global_threshold"
        cut = {g["genre"]: g["threshold"] for g in listed["genres"] if g["predictable"]}
        assert len(set(cut.values())) == 1 and min(cut.values()) >= 0.10
        expected = [
            p
            for p in sorted(body["probabilities"], key=lambda p: -p["probability"])
            if p["genre"] in cut and p["probability"] >= cut[p["genre"]]
        ]
        assert body["predicted"] == expected


def test_v2_stays_servable_as_it_was_and_v3_shares_its_probabilities(real_data: Path) -> None:
    """A change of answers is a new version: v3 is v2's weights with another rule."""
    posters = sorted((real_data / "Images").glob("*.jpg"))[:8]
    answers = {}
    for version in ("20261127-lite0-v2", "20261130-lite0-v3"):
        settings = Settings(model_version=version, max_batch_size=2, log_level="WARNING")
        with TestClient(create_app(settings)) as client:
            answers[version] = [
                client.post("/predict", files={"file": (p.name, p.read_bytes())}).json()
                for p in posters
            ]
            rule = client.get("/genres").json()["rule"]
        assert rule["kind"] == ("thresholds" if version.endswith("v2") else "global_threshold")
    for v2, v3 in zip(answers["20261127-lite0-v2"], answers["20261130-lite0-v3"], strict=True):
        assert v2["probabilities"] == v3["probabilities"]
        assert 1 <= len(v2["predicted"]) <= 3  # v2's rule: at most three, never empty here


FIRST_RELEASE = "20261127-lite0"


def test_the_first_release_is_still_served_for_rollback(real_data: Path) -> None:
    settings = Settings(model_version=FIRST_RELEASE, max_batch_size=2, log_level="WARNING")
    poster = sorted((real_data / "Images").glob("*.jpg"))[0]
    with TestClient(create_app(settings)) as client:
        body = client.post("/predict", files={"file": (poster.name, poster.read_bytes())}).json()
        genres = client.get("/genres").json()["genres"]
    assert body["version"] == FIRST_RELEASE
    assert [p["genre"] for p in body["probabilities"]] == REAL_GENRES
    # Its metadata predates `predictable`: every genre but N/A may be predicted, floor applied.
    assert [g["genre"] for g in genres if not g["predictable"]] == ["N/A"]
    assert all(p["probability"] >= 0.10 for p in body["predicted"])


def test_genres_predictable_agrees_with_the_metadata_and_the_card(shipped: Path) -> None:
    from training.card import unpredictable_genres

    metadata = json.loads((shipped / "metadata.json").read_text())
    settings = Settings(max_batch_size=1, log_level="WARNING")
    with TestClient(create_app(settings)) as client:
        genres = client.get("/genres").json()["genres"]
    flags = metadata.get("predictable") or [g != "N/A" for g in REAL_GENRES]
    assert [g["predictable"] for g in genres] == [
        f and g != "N/A" for f, g in zip(flags, REAL_GENRES, strict=True)
    ]
    never = {name.split(" (")[0] for name in unpredictable_genres(metadata)}
    assert never == {g["genre"] for g in genres if not g["predictable"]}


def test_no_dataset_poster_comes_near_the_jpeg_scan_cap_or_ends_early(real_data: Path) -> None:
    from poster_genres.preprocessing import MAX_JPEG_SCANS, _jpeg_data_ends_early
    from poster_genres.structure import excessive_structure

    posters = [p.read_bytes() for p in sorted((real_data / "Images").glob("*.jpg"))]
    assert len(posters) == 6119
    scans = {data.count(b"\xff\xda") for data in posters}
    assert scans == {1} and MAX_JPEG_SCANS > 1  # every one is a baseline JPEG
    assert [data for data in posters if _jpeg_data_ends_early(data)] == []
    assert [data for data in posters if excessive_structure(data)] == []


def test_every_dataset_poster_decodes_to_pillows_own_pixels(real_data: Path) -> None:
    """Plain JPEGs are decoded once by libjpeg-turbo through simplejpeg (with the truncation check
    of the same pass): the pixels must be exactly those of Pillow's decoder, which training used."""
    import io

    import numpy as np
    from PIL import Image

    from poster_genres.preprocessing import _plain_jpeg_to_rgb

    differ, slow = [], []
    for path in sorted((real_data / "Images").glob("*.jpg")):
        data = path.read_bytes()
        with Image.open(io.BytesIO(data)) as image:
            single_pass = _plain_jpeg_to_rgb(image, data)
            pillow = np.asarray(image.convert("RGB"))
        if single_pass is None:
            slow.append(path.name)
        elif not np.array_equal(np.asarray(single_pass), pillow):
            differ.append(path.name)
    assert differ == []
    assert slow == []  # every poster takes the single-pass path (decode_poster's, tested)
