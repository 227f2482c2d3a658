"""A model version on disk: finding it, verifying and loading it, and writing one atomically.

Layout: `<store>/<model name>/<version>/{model.keras, genres.json, metadata.json, curves.png}`.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np

from poster_genres.decision import DecisionRule
from poster_genres.errors import ModelStoreError
from poster_genres.metadata import ModelMetadata, metadata_json, parse_metadata, read_metadata

MODEL_FILE = "model.keras"
GENRES_FILE = "genres.json"
METADATA_FILE = "metadata.json"
CURVES_FILE = "curves.png"
RELIABILITY_FILE = "reliability.png"
REQUIRED_FILES = (MODEL_FILE, GENRES_FILE, METADATA_FILE)


@dataclass(frozen=True)
class LoadedModel:
    """A verified model with its ordered genres, decision rule and metadata."""

    model: keras.Model
    metadata: ModelMetadata
    path: Path

    @property
    def name(self) -> str:
        return self.metadata.name

    @property
    def version(self) -> str:
        return self.metadata.version

    @property
    def genres(self) -> list[str]:
        return self.metadata.genres

    @property
    def thresholds(self) -> np.ndarray:
        return np.asarray(self.metadata.thresholds, dtype=np.float32)

    def decision_rule(self) -> DecisionRule:
        """The rule this version's thresholds, predictable genres and decision settings define."""
        return DecisionRule.build(
            self.metadata.genres,
            self.metadata.thresholds,
            self.metadata.predictable_flags(),
            floor=self.metadata.decision.floor,
            max_predicted=self.metadata.decision.max_predicted,
        )


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def available_versions(store: Path, name: str) -> list[str]:
    """Version folder names under `<store>/<name>`, oldest first (names sort by date)."""
    model_dir = store / name
    try:
        return sorted(
            p.name for p in model_dir.glob("*") if p.is_dir() and not p.name.startswith(".")
        )
    except OSError as exc:
        raise ModelStoreError(f"cannot read the model store {model_dir}: {exc}") from exc


def resolve_version_dir(store: Path, name: str, version: str | None) -> Path:
    """The directory of `version`, or of the newest version (by name order) when none is given."""
    model_dir = store / name
    versions = available_versions(store, name)
    if version:
        if version not in versions:
            listed = ", ".join(versions) or "none"
            raise ModelStoreError(
                f"model version {version!r} not found under {model_dir} (available: {listed})"
            )
        return model_dir / version
    if not versions:
        raise ModelStoreError(f"no model version found under {model_dir}")
    return model_dir / versions[-1]


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
    if not isinstance(genres, list) or not genres or not all(isinstance(g, str) for g in genres):
        raise ModelStoreError(f"{path / GENRES_FILE} must be a non-empty list of genre names")
    metadata = read_metadata(path / METADATA_FILE)
    # Order matters: the model's outputs are labelled by position.
    if metadata.genres != genres:
        raise ModelStoreError(
            f"{path}: genres.json and metadata.json list different genres or a different order"
        )
    try:
        actual_sha = sha256_of(path / MODEL_FILE)
    except OSError as exc:
        raise ModelStoreError(f"cannot read {path / MODEL_FILE}: {exc}") from exc
    if actual_sha != metadata.model_sha256:
        raise ModelStoreError(
            f"{path / MODEL_FILE}: SHA-256 {actual_sha[:12]}... does not match metadata "
            f"({metadata.model_sha256[:12]}...): the file is corrupt or was replaced"
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
    return LoadedModel(model=model, metadata=metadata, path=path)


def write_version(
    store: Path,
    name: str,
    version: str,
    model: keras.Model,
    metadata: dict[str, Any],
    extra_files: Callable[[Path], None] | None = None,
) -> Path:
    """Write model, genres and metadata into a temporary folder, then rename it into place, so a
    crashed run never leaves a half-written version behind."""
    final = store / name / version
    if final.exists():
        raise FileExistsError(f"{final} already exists; choose another --version")
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{version}.", dir=final.parent))
    try:
        # A fresh model from the config: uncompiled, so the file carries no optimizer state
        # (clone_model would compile the copy like the original).
        serving_model = keras.Model.from_config(model.get_config())
        serving_model.set_weights(model.get_weights())
        serving_model.save(staging / MODEL_FILE)
        record = {**metadata, "name": name, "version": version}
        record["model_sha256"] = sha256_of(staging / MODEL_FILE)
        typed = parse_metadata(record, staging / METADATA_FILE)
        (staging / GENRES_FILE).write_text(json.dumps(typed.genres, indent=1) + "\n")
        (staging / METADATA_FILE).write_text(metadata_json(typed))
        if extra_files is not None:
            extra_files(staging)
        os.chmod(staging, 0o755)
        os.rename(staging, final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return final


def update_metadata(path: Path, change: Callable[[ModelMetadata], ModelMetadata]) -> None:
    """Rewrite a version's metadata.json atomically (the model file and its SHA-256 untouched)."""
    metadata_path = path / METADATA_FILE
    updated = change(read_metadata(metadata_path))
    staging = metadata_path.with_name(f".{METADATA_FILE}.tmp")
    staging.write_text(metadata_json(updated))
    os.replace(staging, metadata_path)
