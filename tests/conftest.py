"""Fixtures: a tiny synthetic dataset in the real layout, a tiny trained model store, a client.

Nothing here needs ../shared: the real-data tests have their own fixture that skips without it
(and fails under CI=true).
"""

from __future__ import annotations

import io
import os
import random
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image, ImageDraw

from app.config import Settings
from app.main import create_app
from devkit.dataset import DATASET

if TYPE_CHECKING:  # training imports Keras: only the fixtures that train load it
    from training.train import TrainConfig

TINY_GENRES = ["Action", "Comedy", "Drama", "N/A"]
SLOW_TEST_TIMEOUT_S = 600
REAL_DATA = DATASET
IN_CI = os.environ.get("CI", "").lower() == "true"


def poster_bytes(
    colour: tuple[int, int, int] = (200, 40, 40),
    size: tuple[int, int] = (60, 90),
    fmt: str = "JPEG",
    square: bool = False,
    mode: str = "RGB",
    **save: object,
) -> bytes:
    """A small synthetic poster: a flat colour, optionally with a white square (a 'shape')."""
    image = Image.new("RGB", size, colour)
    if square:
        ImageDraw.Draw(image).rectangle((10, 10, size[0] // 2, size[1] // 2), fill=(255, 255, 255))
    if mode != "RGB":
        image = image.convert(mode)
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **save)
    return buffer.getvalue()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests marked slow get a longer timeout than the 120 s default, unless they set their own."""
    for item in items:
        if item.get_closest_marker("slow") and not item.get_closest_marker("timeout"):
            item.add_marker(pytest.mark.timeout(SLOW_TEST_TIMEOUT_S))


@dataclass
class TinyDataset:
    root: Path
    csv: Path
    images: Path
    missing_id: str
    duplicated_id: str


def write_tiny_dataset(root: Path, n: int = 48, seed: int = 0) -> TinyDataset:
    """Learnable patterns: red -> Action, a white square -> Comedy, dark -> Drama."""
    rng = random.Random(seed)
    images = root / "Images"
    images.mkdir(parents=True)
    rows = []
    for i in range(n):
        poster_id = f"tt{i:07d}"
        action = i % 2 == 0
        comedy = i % 3 == 0
        drama = (not action and not comedy) or i % 5 == 0
        na = i == 7
        base = (210, 30, 30) if action else (30, 90, 200)
        if drama:
            base = tuple(c // 3 for c in base)
        jitter = rng.randint(-15, 15)
        colour = tuple(max(0, min(255, c + jitter)) for c in base)
        (images / f"{poster_id}.jpg").write_bytes(poster_bytes(colour, square=comedy))
        labels = [int(action), int(comedy), int(drama), int(na)]
        names = [g for g, v in zip(TINY_GENRES, labels, strict=True) if v]
        rows.append(f'{poster_id},"{names}",' + ",".join(map(str, labels)))
    duplicated = rows[3]
    missing_id = "tt9999999"
    rows.append(duplicated)
    rows.append(f"{missing_id},\"['Drama']\",0,0,1,0")
    csv_path = root / "train.csv"
    csv_path.write_text("Id,Genre," + ",".join(TINY_GENRES) + "\n" + "\n".join(rows) + "\n")
    return TinyDataset(root, csv_path, images, missing_id, duplicated.split(",")[0])


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory: pytest.TempPathFactory) -> TinyDataset:
    return write_tiny_dataset(tmp_path_factory.mktemp("dataset"))


def tiny_config(dataset: TinyDataset, store: Path, **overrides: Any) -> TrainConfig:
    """The training run of the tiny version: a small CNN, 3 epochs, into `store`."""
    from training.recipes import Recipe
    from training.train import TrainConfig

    settings: dict[str, Any] = {
        "csv": dataset.csv,
        "images": dataset.images,
        "store": store,
        "version": "tiny",
        "arch": "compact",
        "recipe": Recipe(epochs=3, batch_size=16, learning_rate=3e-3),
        "val_fraction": 0.25,
        "test_fraction": 0.25,
        "min_positives_to_predict": 3,
    }
    return TrainConfig(**{**settings, **overrides})


@pytest.fixture(scope="session")
def tiny_store(tmp_path_factory: pytest.TempPathFactory, tiny_dataset: TinyDataset) -> Path:
    """A model store holding one version trained end to end on the tiny dataset."""
    from training.train import run

    store = tmp_path_factory.mktemp("store")
    run(tiny_config(tiny_dataset, store))
    return store


@pytest.fixture(scope="session")
def tiny_version(tiny_store: Path) -> Path:
    return tiny_store / "poster-genres" / "tiny"


def make_settings(store: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {"model_store": store, "max_batch_size": 4, "log_level": "WARNING"}
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]  # pydantic validates at run time


@pytest.fixture(scope="session")
def client(tiny_store: Path) -> Iterator[TestClient]:
    """One running app (lifespan included) shared by the API tests: loading a model takes seconds."""
    app = create_app(make_settings(tiny_store, max_batch_wait_ms=20))
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


@pytest.fixture
def broken_store(tmp_path: Path, tiny_store: Path) -> Path:
    """A writable copy of the tiny store, for tests that damage it."""
    copy = tmp_path / "store"
    shutil.copytree(tiny_store, copy)
    return copy


@pytest.fixture(scope="session")
def real_data() -> Path:
    """The shared dataset; skips without it, fails without it under CI=true."""
    if not (REAL_DATA / "train.csv").is_file():
        message = f"real dataset not found at {REAL_DATA}"
        if IN_CI:
            pytest.fail(message + " (required when CI=true)")
        pytest.skip(message)
    return REAL_DATA


def image_array(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


@pytest.fixture(scope="session")
def two_version_store(tmp_path_factory: pytest.TempPathFactory, tiny_store: Path) -> Path:
    """The tiny store with a second version, `tiny-b`: tiny's weights (the same probabilities)
    with another decision rule, one threshold of 0.05 shared by every genre and no cap."""
    from poster_genres.artifact import update_metadata
    from poster_genres.metadata import DecisionSettings

    store = tmp_path_factory.mktemp("two-versions")
    shutil.copytree(tiny_store, store, dirs_exist_ok=True)
    second = store / "poster-genres" / "tiny-b"
    shutil.copytree(store / "poster-genres" / "tiny", second)
    rule = DecisionSettings(rule="global_threshold", threshold=0.05, max_predicted=0, floor=0.0)
    update_metadata(second, lambda m: m.model_copy(update={"version": "tiny-b", "decision": rule}))
    return store
