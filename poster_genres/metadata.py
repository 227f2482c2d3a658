"""`metadata.json`: the typed record that ties a model version together.

Read and written only through `ModelMetadata`. Versions written before the schema had a version
(the first release) read as schema 1: fields added since have defaults, so an old version stays
servable for rollback. A malformed or contradictory field is a `ModelStoreError` naming it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from poster_genres.decision import MAX_PREDICTED, PROBABILITY_FLOOR, RuleKind
from poster_genres.drift import DriftReference
from poster_genres.errors import ModelStoreError

# 1: the first release (no schema_version field). 2: predictable, decision, calibration.
# 3: litert (a checked model.tflite beside model.keras). `drift` was added within schema 3: it is
# optional, and readers that predate it keep it as an unknown field.
SCHEMA_VERSION = 3


class DecisionSettings(BaseModel):
    """The decision rule's shared parameters; per-genre ones are `thresholds` and `predictable`."""

    model_config = ConfigDict(extra="forbid")

    rule: RuleKind = "thresholds"  # metadata written before rules had names used thresholds
    floor: float = Field(PROBABILITY_FLOOR, ge=0.0, lt=1.0)
    # 0: no cap (JSON keeps a 0, where a null would be dropped and read back as the default).
    max_predicted: int = Field(MAX_PREDICTED, ge=0)

    # global_threshold only: the one threshold every genre shares.
    threshold: float | None = Field(None, ge=0.0, le=1.0)

    @model_validator(mode="after")
    def _complete(self) -> DecisionSettings:
        if self.rule == "thresholds" and self.max_predicted == 0:
            raise ValueError("max_predicted: the thresholds rule needs a cap")
        if (self.rule == "global_threshold") != (self.threshold is not None):
            raise ValueError("threshold: set for the global_threshold rule, and only for it")
        return self

    @property
    def cap(self) -> int | None:
        """At most this many genres predicted; None: no cap."""
        return self.max_predicted or None


class LiteRTRecord(BaseModel):
    """`model.tflite`: exported from the Keras model and checked against it on real posters."""

    model_config = ConfigDict(extra="allow")

    file: str = "model.tflite"
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    # Output names in the file: "probabilities" always, "class_maps" when the head allows CAM.
    outputs: list[str] = Field(default_factory=lambda: ["probabilities"])
    parity: dict[str, Any] = Field(default_factory=dict)
    converter: str = ""
    exported_at: str = ""


class Split(BaseModel):
    """How the posters were split, and which parts trained the shipped model."""

    model_config = ConfigDict(extra="allow")

    seed: int
    fractions: dict[str, float] = Field(default_factory=dict)
    ids: dict[str, list[str]] = Field(default_factory=dict)
    trained_on: list[str] = Field(default_factory=lambda: ["train"])


class ModelMetadata(BaseModel):
    """Everything a model version says about itself; unknown fields are kept as they are."""

    model_config = ConfigDict(extra="allow")

    schema_version: int = Field(1, ge=1)
    name: str = Field(min_length=1)
    version: str = Field(min_length=1)
    architecture: str
    created_at: str
    genres: list[str] = Field(min_length=1)
    thresholds: list[float]
    predictable: list[bool] | None = None
    decision: DecisionSettings = Field(default_factory=DecisionSettings)
    label_prior: list[float] = Field(default_factory=list)
    model_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    input: dict[str, Any] = Field(default_factory=dict)
    split: Split | None = None
    metrics: dict[str, Any] = Field(default_factory=dict)
    training: dict[str, Any] = Field(default_factory=dict)
    calibration: dict[str, Any] | None = None
    litert: LiteRTRecord | None = None
    drift: DriftReference | None = None

    @model_validator(mode="after")
    def _consistent(self) -> ModelMetadata:
        n = len(self.genres)
        if len(set(self.genres)) != n:
            raise ValueError("genres: a genre is listed twice")
        if len(self.thresholds) != n:
            raise ValueError(f"thresholds: {len(self.thresholds)} values for {n} genres")
        if not all(0.0 <= t <= 1.0 for t in self.thresholds):
            raise ValueError("thresholds: every threshold must be within [0, 1]")
        if self.predictable is not None and len(self.predictable) != n:
            raise ValueError(f"predictable: {len(self.predictable)} flags for {n} genres")
        if self.drift is not None and (
            len(self.drift.predicted_rate) != n or len(self.drift.mean_probability) != n
        ):
            raise ValueError(
                f"drift: the reference must hold one rate and one mean per genre ({n})"
            )
        if self.label_prior and len(self.label_prior) != n:
            raise ValueError(f"label_prior: {len(self.label_prior)} values for {n} genres")
        if self.schema_version > SCHEMA_VERSION:
            raise ValueError(
                f"schema_version: {self.schema_version} is newer than this code reads "
                f"({SCHEMA_VERSION}); upgrade poster-genres to serve it"
            )
        return self

    def predictable_flags(self) -> list[bool]:
        """Per genre: may it be predicted? (Schema 1 had no such field: every genre may.)"""
        return list(self.predictable) if self.predictable is not None else [True] * len(self.genres)


def parse_metadata(data: Any, source: Path) -> ModelMetadata:
    """Validate decoded JSON, or raise a `ModelStoreError` naming the first bad field."""
    try:
        return ModelMetadata.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        # Cross-field checks (the model validator) already start their message with the field.
        message = first["msg"].removeprefix("Value error, ")
        detail = f"{where}: {message}" if where else message
        raise ModelStoreError(f"{source}: metadata field {detail}") from None


def read_metadata(path: Path) -> ModelMetadata:
    """Read and validate a `metadata.json`."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelStoreError(f"cannot read {path}: {exc}") from exc
    return parse_metadata(data, path)


def metadata_json(metadata: ModelMetadata) -> str:
    """The file's text: sorted keys, so two writes of the same metadata are byte-identical."""
    data = metadata.model_dump(mode="json", exclude_none=True)
    return json.dumps(data, indent=1, sort_keys=True) + "\n"
