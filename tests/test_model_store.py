"""A missing, corrupt or mismatched model is refused: by the loader, and by the process at start."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from devkit.ports import free_port
from poster_genres.artifact import load_version, resolve_version_dir
from poster_genres.classifier import GenreClassifier
from poster_genres.errors import ModelStoreError
from poster_genres.metadata import SCHEMA_VERSION

PROJECT = Path(__file__).resolve().parents[1]


def version_of(store: Path) -> Path:
    return store / "poster-genres" / "tiny"


def test_newest_version_is_the_default(broken_store: Path) -> None:
    (broken_store / "poster-genres" / "aaa").mkdir()
    assert resolve_version_dir(broken_store, "poster-genres", None).name == "tiny"
    assert resolve_version_dir(broken_store, "poster-genres", "aaa").name == "aaa"
    with pytest.raises(ModelStoreError, match="not found"):
        resolve_version_dir(broken_store, "poster-genres", "nope")


def test_missing_model_file(broken_store: Path) -> None:
    (version_of(broken_store) / "model.keras").unlink()
    with pytest.raises(ModelStoreError, match=r"missing model\.keras"):
        load_version(version_of(broken_store))


def test_corrupt_model_file_fails_the_checksum(broken_store: Path) -> None:
    model = version_of(broken_store) / "model.keras"
    data = bytearray(model.read_bytes())
    data[len(data) // 2] ^= 0xFF
    model.write_bytes(bytes(data))
    with pytest.raises(ModelStoreError, match="SHA-256"):
        load_version(version_of(broken_store))


def test_genre_list_that_does_not_match_the_outputs(broken_store: Path) -> None:
    version = version_of(broken_store)
    genres = ["Action", "Comedy", "Drama"]
    (version / "genres.json").write_text(json.dumps(genres))
    metadata = json.loads((version / "metadata.json").read_text())
    metadata["genres"] = genres
    for per_genre in ("thresholds", "predictable", "label_prior"):
        metadata[per_genre] = metadata[per_genre][:3]
    for per_genre in ("predicted_rate", "mean_probability"):
        metadata["drift"][per_genre] = metadata["drift"][per_genre][:3]
    (version / "metadata.json").write_text(json.dumps(metadata))
    with pytest.raises(ModelStoreError, match=r"4 outputs but genres\.json lists 3"):
        load_version(version)


def test_genres_json_disagreeing_with_metadata(broken_store: Path) -> None:
    (version_of(broken_store) / "genres.json").write_text('["a", "b", "c", "d"]')
    with pytest.raises(ModelStoreError, match="different genres"):
        load_version(version_of(broken_store))


def run_service(
    store: Path, extra: dict[str, str], timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "POSTER_MODEL_STORE": str(store), "POSTER_PORT": str(free_port()), **extra}
    return subprocess.run(
        [sys.executable, "-m", "app"],
        cwd=PROJECT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.mark.parametrize(
    ("damage", "name", "runtime"),
    [
        ("missing", "model.keras", "keras"),
        ("corrupt", "model.keras", "auto"),  # every model file present is verified
        ("missing", "model.tflite", "auto"),  # recorded in the metadata, so it must be there
        ("corrupt", "model.tflite", "auto"),  # never a quiet fall-back to Keras
    ],
)
def test_process_refuses_to_start_on_a_bad_model(
    broken_store: Path, damage: str, name: str, runtime: str
) -> None:
    model = version_of(broken_store) / name
    if damage == "missing":
        model.unlink()
    else:
        model.write_bytes(b"garbage")
    result = run_service(broken_store, {"POSTER_RUNTIME": runtime})
    assert result.returncode != 0
    clear = [line for line in result.stderr.splitlines() if "cannot serve:" in line]
    assert clear and name in clear[0]
    assert "Uvicorn running" not in result.stderr


def test_a_version_with_only_its_tflite_serves_under_litert(broken_store: Path) -> None:
    (version_of(broken_store) / "model.keras").unlink()
    assert GenreClassifier.open(version_of(broken_store)).runtime == "litert"
    with pytest.raises(ModelStoreError, match=r"missing model\.keras"):
        GenreClassifier.open(version_of(broken_store), runtime="keras")


def test_new_versions_are_written_with_the_current_schema(tiny_version: Path) -> None:
    written = json.loads((tiny_version / "metadata.json").read_text())
    assert written["schema_version"] == SCHEMA_VERSION
    assert len(written["predictable"]) == len(written["genres"])
    assert written["decision"] == {"rule": "thresholds", "floor": 0.1, "max_predicted": 3}


def test_a_reordered_genres_json_is_refused(broken_store: Path) -> None:
    version = broken_store / "poster-genres" / "tiny"
    genres = json.loads((version / "genres.json").read_text())
    (version / "genres.json").write_text(json.dumps(list(reversed(genres))))
    with pytest.raises(ModelStoreError, match="different order"):
        load_version(version)


def test_a_malformed_metadata_field_stops_loading_naming_it(broken_store: Path) -> None:
    version = version_of(broken_store)
    metadata = json.loads((version / "metadata.json").read_text())
    metadata["thresholds"] = metadata["thresholds"][:-1]
    (version / "metadata.json").write_text(json.dumps(metadata))
    with pytest.raises(ModelStoreError, match="metadata field thresholds"):
        load_version(version)
