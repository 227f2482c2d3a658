"""Response models: what /docs declares and what every answer is validated against."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field


class ErrorBody(BaseModel):
    code: str = Field(examples=["invalid_image"], description="stable, machine-readable")
    message: str = Field(description="for people")
    request_id: str


class ErrorResponse(BaseModel):
    """The one shape of every 4xx and 5xx answer."""

    error: ErrorBody


class GenreScore(BaseModel):
    genre: str
    probability: float = Field(ge=0.0, le=1.0)


class ImageInfo(BaseModel):
    width: int
    height: int
    format: str


class Timings(BaseModel):
    """Milliseconds per stage; the same stage names as in /metrics and the benchmark."""

    decode: float
    preprocess: float
    queue: float
    inference: float
    total: float


class Prediction(BaseModel):
    model: str
    version: str
    probabilities: list[GenreScore] = Field(description="all genres, in model order")
    top_k: list[GenreScore] = Field(description="the k most probable, most probable first")
    predicted: list[GenreScore] = Field(
        description="predictable genres at or above max(threshold, floor) as shown (4 decimals), "
        "most probable first, "
        "at most 3; when none passes, the most probable predictable genre if it reaches the floor; "
        "otherwise empty"
    )
    image: ImageInfo
    timings_ms: Timings
    batch_size: int = Field(description="images in the model call that served this one")


class ExplainTimings(BaseModel):
    """Milliseconds per stage of an explanation."""

    decode: float
    preprocess: float
    queue: float = Field(description="waiting for the model thread")
    explain: float = Field(description="the model's forward and backward pass")
    render: float = Field(description="drawing and encoding the overlay")
    total: float


class Explanation(BaseModel):
    model: str
    version: str
    genre: str = Field(description="the genre explained: the one asked for, or the most probable")
    probability: float = Field(ge=0.0, le=1.0)
    predicted: bool = Field(description="whether /predict lists this genre as predicted")
    method: Literal["grad-cam", "cam"] = Field(
        description="grad-cam (the Keras runtime) or cam (LiteRT) on the last feature map; for "
        "the shipped models' heads the two are the same map: each cell's share of the genre's "
        "logit"
    )
    grid: list[list[float]] = Field(
        description="rows from the top of the poster, columns from the left; 1 = the strongest "
        "evidence for the genre, 0 = none. The cells cover the poster evenly, whatever its shape"
    )
    overlay_png: str = Field(
        description="base64 PNG: the grid over the poster, longest side <= 512"
    )
    overlay_width: int
    overlay_height: int
    image: ImageInfo
    timings_ms: ExplainTimings


class BatchItem(BaseModel):
    filename: str | None
    result: Prediction | None = None
    error: ErrorBody | None = None


class BatchPrediction(BaseModel):
    results: list[BatchItem]


class GenreInfo(BaseModel):
    index: int
    genre: str
    threshold: float | None = Field(
        description="the probability this genre needs to be predicted: its own under the "
        "`thresholds` rule, the one all genres share under `global_threshold`; null under "
        "`expected_f1`, which uses none"
    )
    predictable: bool = Field(
        description="false for N/A and for genres with too few validation posters to tune a "
        "threshold: such a genre is never in `predicted`"
    )


class DecisionRuleInfo(BaseModel):
    kind: Literal["thresholds", "expected_f1", "global_threshold"]
    max_predicted: int | None = Field(description="the most genres `predicted` holds; null: no cap")
    floor: float = Field(description="no genre under this probability is ever predicted")
    summary: str = Field(description="the rule in plain words")


class GenresResponse(BaseModel):
    version: str = Field(description="the version these genres and this rule belong to")
    versions: list[str] = Field(description="every version served, the default first")
    genres: list[GenreInfo]
    rule: DecisionRuleInfo


class Health(BaseModel):
    status: Literal["ok", "loading", "draining", "failed"]
    model: str | None = None
    version: str | None = None
    runtime: Literal["keras", "litert"] | None = None
    versions: list[str] | None = Field(None, description="every version served, the default first")
    uptime_s: float


class Liveness(BaseModel):
    status: Literal["alive"]


class ModelInfo(BaseModel):
    name: str
    version: str
    default_version: str = Field(description="the version that answers without ?version=")
    versions: list[str] = Field(description="every version served, the default first")
    runtime: Literal["keras", "litert"] = Field(description="what runs the model (POSTER_RUNTIME)")
    genres: list[str]
    thresholds: list[float]
    input: dict[str, Any]
    metadata: dict[str, Any] = Field(description="metadata.json, without the split's Id lists")


class DefaultVersion(BaseModel):
    version: str = Field(description="a served version, to answer requests without ?version=")


class DefaultVersionChanged(BaseModel):
    default_version: str
    previous: str
    versions: list[str]


class ProtocolError(BaseModel):
    """The Open Inference Protocol's error shape (under /v2)."""

    error: str = Field(description="what went wrong, for people")
