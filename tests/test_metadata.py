"""metadata.json through one typed model: old versions stay servable, bad fields are named."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from poster_genres.artifact import METADATA_FILE
from poster_genres.errors import ModelStoreError
from poster_genres.metadata import SCHEMA_VERSION, metadata_json, parse_metadata, read_metadata

PROJECT = Path(__file__).resolve().parents[1]
V1 = PROJECT / "model_store" / "poster-genres" / "20261127-lite0"


def valid() -> dict[str, Any]:
    return {
        "schema_version": 2,
        "name": "poster-genres",
        "version": "v",
        "architecture": "lite0",
        "created_at": "2026-11-27T00:00:00+00:00",
        "genres": ["Action", "Comedy", "Drama", "N/A"],
        "thresholds": [0.3, 0.4, 0.5, 0.5],
        "predictable": [True, True, False, False],
        "label_prior": [0.2, 0.3, 0.5, 0.01],
        "model_sha256": "0" * 64,
    }


def test_the_first_release_reads_as_schema_1_with_defaults() -> None:
    metadata = read_metadata(V1 / METADATA_FILE)
    assert "schema_version" not in json.loads((V1 / METADATA_FILE).read_text())
    assert metadata.schema_version == 1
    assert metadata.predictable is None and metadata.predictable_flags() == [True] * 25
    assert metadata.decision.floor == 0.10 and metadata.decision.max_predicted == 3
    assert metadata.version == "20261127-lite0" and len(metadata.thresholds) == 25
    # Fields this code does not model are kept as they were.
    assert "seed" in metadata.model_dump()["compared"]


def test_a_valid_record_round_trips() -> None:
    metadata = parse_metadata(valid(), Path("m.json"))
    assert metadata.predictable_flags() == [True, True, False, False]
    assert json.loads(metadata_json(metadata)) == {
        **valid(),
        "decision": {"rule": "thresholds", "floor": 0.1, "max_predicted": 3},
        "input": {},
        "metrics": {},
        "training": {},
    }


@pytest.mark.parametrize(
    ("change", "named"),
    [
        (lambda m: m.update(thresholds=m["thresholds"][:-1]), "thresholds: 3 values for 4 genres"),
        (lambda m: m.update(predictable=[True]), "predictable: 1 flags for 4 genres"),
        (lambda m: m.update(label_prior=[0.5]), "label_prior: 1 values for 4 genres"),
        (lambda m: m["thresholds"].__setitem__(0, 1.5), "every threshold must be within"),
        (lambda m: m["thresholds"].__setitem__(0, -0.1), "every threshold must be within"),
        (lambda m: m.update(genres=["A", "A", "B", "C"]), "a genre is listed twice"),
        (lambda m: m.update(model_sha256="not-a-hash"), "metadata field model_sha256"),
        (lambda m: m.pop("genres"), "metadata field genres: Field required"),
        (lambda m: m.update(genres=[]), "metadata field genres"),
        (lambda m: m.update(decision={"floor": 2}), "metadata field decision.floor"),
        (
            lambda m: m.update(decision={"max_predicted": -1}),
            "metadata field decision.max_predicted",
        ),
        (lambda m: m.update(schema_version=99), "newer than this code reads"),
        (lambda m: m.update(schema_version=0), "metadata field schema_version"),
    ],
)
def test_a_malformed_or_contradictory_field_is_named(change: Any, named: str) -> None:
    record = valid()
    change(record)
    with pytest.raises(ModelStoreError, match="^m.json: .*" + re.escape(named)):
        parse_metadata(record, Path("m.json"))


def test_the_current_schema_is_accepted_and_the_previous_too() -> None:
    for version in (1, SCHEMA_VERSION):
        assert parse_metadata({**valid(), "schema_version": version}, Path("m")).schema_version == (
            version
        )


def test_an_unreadable_file_is_a_model_store_error(tmp_path: Path) -> None:
    (tmp_path / "metadata.json").write_text("{not json")
    with pytest.raises(ModelStoreError, match="cannot read"):
        read_metadata(tmp_path / "metadata.json")


def test_error_messages_read_as_one_plain_line() -> None:
    cross_field = valid()
    cross_field["thresholds"] = cross_field["thresholds"][:-1]
    with pytest.raises(ModelStoreError) as first:
        parse_metadata(cross_field, Path("m.json"))
    assert str(first.value) == "m.json: metadata field thresholds: 3 values for 4 genres"
    one_field = valid()
    one_field["decision"] = {"floor": 2}
    with pytest.raises(ModelStoreError) as second:
        parse_metadata(one_field, Path("m.json"))
    assert str(second.value) == (
        "m.json: metadata field decision.floor: Input should be less than 1"
    )


def test_written_metadata_reads_back_equal(tmp_path: Path) -> None:
    metadata = parse_metadata(valid(), Path("m.json"))
    (tmp_path / "metadata.json").write_text(metadata_json(metadata), encoding="utf-8")
    assert read_metadata(tmp_path / "metadata.json") == metadata
    with pytest.raises(ModelStoreError, match=str(tmp_path / "missing.json")):
        read_metadata(tmp_path / "missing.json")


def test_the_file_is_sorted_one_space_indented_json() -> None:
    text = metadata_json(parse_metadata(valid(), Path("m.json")))
    data = json.loads(text)
    assert text == json.dumps(data, indent=1, sort_keys=True) + "\n"
    assert list(data) == sorted(data)


@pytest.mark.parametrize(
    ("decision", "message"),
    [
        ({"rule": "thresholds", "max_predicted": 0}, "needs a cap"),
        ({"rule": "global_threshold"}, "threshold: set for the global_threshold rule"),
        (
            {"rule": "expected_f1", "threshold": 0.25},
            "threshold: set for the global_threshold rule",
        ),
        ({"rule": "majority"}, "decision.rule"),
    ],
)
def test_a_decision_rule_must_be_complete_and_known(
    decision: dict[str, object], message: str
) -> None:
    with pytest.raises(ModelStoreError, match=message):
        parse_metadata({**valid(), "decision": decision}, Path("m.json"))


def test_metadata_without_a_rule_name_means_the_thresholds_rule() -> None:
    metadata = parse_metadata({**valid(), "decision": {"floor": 0.1}}, Path("m.json"))
    assert metadata.decision.rule == "thresholds" and metadata.decision.max_predicted == 3
