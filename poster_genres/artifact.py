"""A model version on disk: finding it, verifying it, and writing one atomically.

Layout: `<store>/<model name>/<version>/{model.keras, model.tflite, genres.json, metadata.json,
curves.png, reliability.png, validation.npz}`. A version needs its genres, its metadata and at least
one model file: `model.keras` (the Keras reference), `model.tflite` (LiteRT), or both. Every model
file present is checked against the SHA-256 its metadata records when the version is opened.
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
from typing import TYPE_CHECKING, Any

import numpy as np

from poster_genres.decision import DecisionRule
from poster_genres.errors import ModelStoreError
from poster_genres.metadata import (
    LiteRTRecord,
    ModelMetadata,
    metadata_json,
    parse_metadata,
    read_metadata,
)

MODEL_FILE = "model.keras"
LITERT_FILE = "model.tflite"
GENRES_FILE = "genres.json"
METADATA_FILE = "metadata.json"
CURVES_FILE = "curves.png"
RELIABILITY_FILE = "reliability.png"
# The validation split scored by the model fitted on train only (ids, labels, raw, calibrated).
VALIDATION_FILE = "validation.npz"
REQUIRED_FILES = (GENRES_FILE, METADATA_FILE)

if TYPE_CHECKING:
    import keras


@dataclass(frozen=True)
class ModelVersion:
    """A verified version folder: its metadata and which model files it has; nothing loaded."""

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

    @property
    def litert(self) -> LiteRTRecord | None:
        """The LiteRT export's record when the version has a verified `model.tflite`."""
        return self.metadata.litert

    @property
    def has_keras(self) -> bool:
        return (self.path / MODEL_FILE).is_file()

    def decision_rule(self) -> DecisionRule:
        """The rule this version's thresholds, predictable genres and decision settings define."""
        decision = self.metadata.decision
        shared = decision.threshold
        return DecisionRule.build(
            self.metadata.genres,
            self.metadata.thresholds if shared is None else [shared] * len(self.metadata.genres),
            self.metadata.predictable_flags(),
            floor=decision.floor,
            max_predicted=decision.cap,
            kind=decision.rule,
        )

    def litert_bytes(self) -> bytes:
        """`model.tflite`'s content, checked once more against its SHA-256 as it is read."""
        record = self.litert
        if record is None:
            raise ModelStoreError(f"{self.path} has no model.tflite")
        content = _read_model_file(self.path / LITERT_FILE)
        _check_sha(self.path / LITERT_FILE, hashlib.sha256(content).hexdigest(), record.sha256)
        return content


@dataclass(frozen=True)
class LoadedModel(ModelVersion):
    """A verified version with its Keras model loaded (training, Grad-CAM, the Keras runtime)."""

    model: keras.Model


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


def resolve_served_versions(
    store: Path, name: str, default: str | None, more: list[str]
) -> list[Path]:
    """The version directories one process serves, the default first: `default` (the newest when
    None) and the versions in `more` (`["all"]`: every version in the store), each once."""
    paths = [resolve_version_dir(store, name, default)]
    wanted = available_versions(store, name) if more == ["all"] else more
    for version in wanted:
        path = resolve_version_dir(store, name, version)
        if path not in paths:
            paths.append(path)
    return paths


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelStoreError(f"cannot read {path}: {exc}") from exc


def _read_model_file(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ModelStoreError(f"cannot read {path}: {exc}") from exc


def _check_sha(path: Path, actual: str, recorded: str) -> None:
    if actual != recorded:
        raise ModelStoreError(
            f"{path}: SHA-256 {actual[:12]}... does not match metadata "
            f"({recorded[:12]}...): the file is corrupt or was replaced"
        )


def _verified_sha(path: Path, recorded: str) -> None:
    try:
        actual = sha256_of(path)
    except OSError as exc:
        raise ModelStoreError(f"cannot read {path}: {exc}") from exc
    _check_sha(path, actual, recorded)


def open_version(path: Path) -> ModelVersion:
    """Verify a version directory without loading a model: its genres and metadata agree, it has
    a model file, and every model file present matches the SHA-256 its metadata records."""
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
    has_keras = (path / MODEL_FILE).is_file()
    has_litert = (path / LITERT_FILE).is_file()
    if has_litert and metadata.litert is None:
        raise ModelStoreError(
            f"{path / LITERT_FILE} is not recorded in metadata.json: export it with "
            "`python -m training export-litert`, which checks it against the Keras model"
        )
    if metadata.litert is not None and not has_litert:
        raise ModelStoreError(f"{path} is missing {LITERT_FILE}, which metadata.json records")
    if not has_keras and not has_litert:
        raise ModelStoreError(f"{path} is missing {MODEL_FILE}")
    if has_keras:
        _verified_sha(path / MODEL_FILE, metadata.model_sha256)
    if metadata.litert is not None:
        _verified_sha(path / LITERT_FILE, metadata.litert.sha256)
    return ModelVersion(metadata=metadata, path=path)


def load_keras_model(version: ModelVersion) -> keras.Model:
    """The version's Keras model, loaded in safe mode, its outputs checked against the genres."""
    path = version.path / MODEL_FILE
    if not path.is_file():
        raise ModelStoreError(f"{version.path} is missing {MODEL_FILE}")
    import keras  # here, not at import: finding a version must not wait for TensorFlow

    try:
        model = keras.saving.load_model(path, compile=False, safe_mode=True)
    except Exception as exc:
        raise ModelStoreError(f"{path} cannot be loaded: {exc}") from exc
    n_outputs = int(model.outputs[0].shape[-1])
    if n_outputs != len(version.genres):
        raise ModelStoreError(
            f"{version.path}: the model has {n_outputs} outputs but genres.json lists "
            f"{len(version.genres)} genres"
        )
    return model


def load_version(path: Path) -> LoadedModel:
    """Verify every file of a version directory, then load its Keras model."""
    version = open_version(path)
    return LoadedModel(metadata=version.metadata, path=path, model=load_keras_model(version))


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
    import keras

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
    """Rewrite a version's metadata.json atomically with what `change` changes, and only that:
    fields it leaves alone keep their text, so an old version gains no defaults it never had
    (the model file and its SHA-256 untouched)."""
    metadata_path = path / METADATA_FILE
    raw = read_json(metadata_path)
    before = parse_metadata(raw, metadata_path)
    after = change(before)
    old_fields = before.model_dump(mode="json", exclude_none=True)
    new_fields = after.model_dump(mode="json", exclude_none=True)
    for key in old_fields.keys() - new_fields.keys():
        raw.pop(key, None)
    raw.update({k: v for k, v in new_fields.items() if old_fields.get(k) != v})
    parse_metadata(raw, metadata_path)  # what is written still reads
    staging = metadata_path.with_name(f".{METADATA_FILE}.tmp")
    staging.write_text(json.dumps(raw, indent=1, sort_keys=True) + "\n")
    os.replace(staging, metadata_path)
