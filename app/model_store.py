"""Finding, verifying and loading a model version: the serving side of the training contract.

Layout: `<store>/<model name>/<version>/{model.keras, genres.json, metadata.json, curves.png}`.
Nothing here imports FastAPI or the training package.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np

MODEL_FILE = "model.keras"
GENRES_FILE = "genres.json"
METADATA_FILE = "metadata.json"
CURVES_FILE = "curves.png"
REQUIRED_FILES = (MODEL_FILE, GENRES_FILE, METADATA_FILE)


class ModelStoreError(RuntimeError):
    """The configured model version cannot be served; the message says which file and why."""


@dataclass(frozen=True)
class LoadedModel:
    """A verified model with its ordered genres, thresholds and metadata."""

    model: keras.Model
    name: str
    version: str
    genres: list[str]
    thresholds: np.ndarray
    metadata: dict[str, Any]
    path: Path


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def resolve_version_dir(store: Path, name: str, version: str | None) -> Path:
    """The directory of `version`, or of the newest version (by name order) when none is given."""
    model_dir = store / name
    try:
        if version:
            path = model_dir / version
            if not path.is_dir():
                raise ModelStoreError(f"model version not found: {path}")
            return path
        versions = sorted(
            p for p in model_dir.glob("*") if p.is_dir() and not p.name.startswith(".")
        )
    except OSError as exc:
        raise ModelStoreError(f"cannot read the model store {model_dir}: {exc}") from exc
    if not versions:
        raise ModelStoreError(f"no model version found under {model_dir}")
    return versions[-1]


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelStoreError(f"cannot read {path}: {exc}") from exc


def load_version(path: Path) -> LoadedModel:
    """Verify every file of a version directory, then load the model in Keras safe mode."""
    missing = [f for f in REQUIRED_FILES if not (path / f).is_file()]
    if missing:
        raise ModelStoreError(f"{path} is missing {', '.join(missing)}")
    genres = read_json(path / GENRES_FILE)
    metadata = read_json(path / METADATA_FILE)
    if not isinstance(genres, list) or not genres or not all(isinstance(g, str) for g in genres):
        raise ModelStoreError(f"{path / GENRES_FILE} must be a non-empty list of genre names")
    if metadata.get("genres") != genres:
        raise ModelStoreError(f"{path}: genres.json and metadata.json list different genres")
    expected_sha = metadata.get("model_sha256")
    try:
        actual_sha = sha256_of(path / MODEL_FILE)
    except OSError as exc:
        raise ModelStoreError(f"cannot read {path / MODEL_FILE}: {exc}") from exc
    if actual_sha != expected_sha:
        raise ModelStoreError(
            f"{path / MODEL_FILE}: SHA-256 {actual_sha[:12]}... does not match metadata "
            f"({str(expected_sha)[:12]}...): the file is corrupt or was replaced"
        )
    try:
        model = keras.saving.load_model(path / MODEL_FILE, compile=False, safe_mode=True)
    except Exception as exc:
        raise ModelStoreError(f"{path / MODEL_FILE} cannot be loaded: {exc}") from exc
    n_outputs = int(model.outputs[0].shape[-1])
    if n_outputs != len(genres):
        raise ModelStoreError(
            f"{path}: the model has {n_outputs} outputs but genres.json lists {len(genres)} genres"
        )
    thresholds = np.asarray(metadata.get("thresholds", [0.5] * len(genres)), dtype=np.float32)
    if thresholds.shape != (len(genres),):
        raise ModelStoreError(f"{path}: metadata has {thresholds.size} thresholds for {n_outputs}")
    return LoadedModel(
        model=model,
        name=str(metadata.get("name", path.parent.name)),
        version=str(metadata.get("version", path.name)),
        genres=genres,
        thresholds=thresholds,
        metadata=metadata,
        path=path,
    )
