"""metadata.json through one typed model: old versions stay servable, bad fields are named."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from poster_genres.artifact import METADATA_FILE, load_version
from poster_genres.errors import ModelStoreError
from poster_genres.metadata import SCHEMA_VERSION, read_metadata

PROJECT = Path(__file__).resolve().parents[1]
V1 = PROJECT / "model_store" / "poster-genres" / "20261127-lite0"


def edit_metadata(version: Path, change: Any) -> None:
    path = version / METADATA_FILE
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def test_the_first_release_reads_as_schema_1_with_defaults() -> None:
    metadata = read_metadata(V1 / METADATA_FILE)
    assert "schema_version" not in json.loads((V1 / METADATA_FILE).read_text())
    assert metadata.schema_version == 1
    assert metadata.predictable is None and metadata.predictable_flags() == [True] * 25
    assert metadata.decision.floor == 0.10 and metadata.decision.max_predicted == 3
    assert metadata.version == "20261127-lite0" and len(metadata.thresholds) == 25
    # Fields this code does not model are kept as they were.
    assert "seed" in metadata.model_dump()["compared"]


def test_new_versions_are_written_with_the_current_schema(tiny_version: Path) -> None:
    written = json.loads((tiny_version / METADATA_FILE).read_text())
    assert written["schema_version"] == SCHEMA_VERSION
    assert len(written["predictable"]) == len(written["genres"])
    assert written["decision"] == {"floor": 0.1, "max_predicted": 3}


@pytest.mark.parametrize(
    ("change", "named"),
    [
        (lambda m: m.update(thresholds=m["thresholds"][:-1]), "thresholds: 3 values for 4 genres"),
        (lambda m: m.update(predictable=[True]), "predictable: 1 flags for 4 genres"),
        (lambda m: m["thresholds"].__setitem__(0, 1.5), "every threshold must be within"),
        (lambda m: m.update(model_sha256="not-a-hash"), "metadata field model_sha256"),
        (lambda m: m.pop("genres"), "metadata field genres: Field required"),
        (lambda m: m.update(decision={"floor": 2}), "metadata field decision.floor"),
        (lambda m: m.update(schema_version=99), "newer than this code reads"),
    ],
)
def test_a_malformed_or_contradictory_field_is_named(
    broken_store: Path, change: Any, named: str
) -> None:
    version = broken_store / "poster-genres" / "tiny"
    edit_metadata(version, change)
    with pytest.raises(ModelStoreError, match=named.replace("(", r"\(").replace(".", r"\.")):
        load_version(version)


def test_a_reordered_genres_json_is_refused(broken_store: Path) -> None:
    version = broken_store / "poster-genres" / "tiny"
    genres = json.loads((version / "genres.json").read_text())
    (version / "genres.json").write_text(json.dumps(list(reversed(genres))))
    with pytest.raises(ModelStoreError, match="different order"):
        load_version(version)
