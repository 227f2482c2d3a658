"""Service settings: environment variables with the `POSTER_` prefix, validated at startup."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict, SettingsError

from app.body_budget import MAX_BODY_COPIES, MIB, default_budget_mb
from poster_genres.preprocessing import DEFAULT_MAX_PIXELS

PROJECT_ROOT = Path(__file__).resolve().parent.parent
MIN_API_KEY_LENGTH = 16


class Settings(BaseSettings):
    """Every knob an operator has. Each field is documented in the README's configuration table."""

    model_config = SettingsConfigDict(env_prefix="POSTER_", extra="ignore")

    model_store: Path = Field(PROJECT_ROOT / "model_store", description="model store root")
    model_name: str = Field("poster-genres", description="model folder inside the store")
    model_version: str | None = Field(
        None, description="the default version (answers without ?version=); default: the newest"
    )
    model_versions: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="more versions served beside the default, each by ?version= and "
        "/v2/models/NAME/versions/V: a comma-separated or JSON list, or `all`",
    )
    runtime: Literal["auto", "litert", "keras"] = Field(
        "auto",
        description="auto: LiteRT when the version has a checked model.tflite, else Keras",
    )
    threads: int | None = Field(
        None, ge=1, le=256, description="CPU threads all model calls share; default: the CPUs"
    )
    interpreters: int | None = Field(
        None,
        ge=1,
        le=256,
        description="LiteRT model calls at once, each with threads / interpreters threads; "
        "default: one",
    )

    host: str = "0.0.0.0"
    port: int = Field(8000, ge=1, le=65535)
    metrics_port: int | None = Field(
        None,
        ge=1,
        le=65535,
        description="serve /metrics on this port, without the key, and not on POSTER_PORT",
    )
    shutdown_grace_s: float = Field(20.0, ge=1, description="in-flight requests get this long")
    header_timeout_s: float = Field(10.0, gt=0, description="request line + headers must arrive")
    body_idle_timeout_s: float = Field(
        30.0, gt=0, description="longest silence in a body or an answer"
    )
    body_timeout_s: float = Field(120.0, gt=0, description="longest time to receive a body")
    max_connections: int = Field(1024, ge=8, description="open connections; beyond: 503")
    max_header_bytes: int = Field(16 * 1024, ge=1024, description="request line + headers")
    drain_delay_s: float = Field(
        5.0,
        ge=0,
        le=300,
        description="after SIGTERM: readiness 503 this long before the listener closes",
    )

    max_upload_bytes: int = Field(10 * 1024 * 1024, gt=0, description="body limit of /predict")
    max_batch_upload_bytes: int = Field(64 * 1024 * 1024, gt=0, description="of /predict/batch")
    max_inflight_body_mb: int | None = Field(
        None,
        ge=1,
        description="MiB all request bodies in flight may hold, each charged twice its size "
        "(parsing copies it; three times for a protocol request); beyond: 503. Default: a "
        "quarter of the memory limit",
    )
    max_batch_files: int = Field(32, ge=1, description="files per /predict/batch request")
    max_batch_share: float = Field(
        0.5, gt=0, le=1, description="share of the queue /predict/batch requests may hold together"
    )
    max_image_pixels: int = Field(
        DEFAULT_MAX_PIXELS, gt=0, description="declared width x height limit"
    )

    max_batch_size: int = Field(16, ge=1, le=256, description="images per model call")
    max_batch_wait_ms: float = Field(5.0, ge=0, description="wait for more images to batch")
    max_queue: int = Field(64, ge=1, description="images waiting for the model; beyond: 503")
    decode_workers: int = Field(2, ge=1, description="images decoded at once")
    excess_refusals_per_s: float = Field(
        2.0,
        gt=0,
        description="uploads whose header declares more decoding than allowed (pixels, JPEG "
        "scans) are refused 422 at most this many a second after a burst of 4; the others wait "
        "their turn (up to 5 s)",
    )
    request_deadline_s: float = Field(10.0, gt=0, description="queued longer than this: 503")
    max_explanations: int = Field(
        2, ge=1, description="/explain requests in progress at once (each takes the model ~25 ms)"
    )
    explain_share: float = Field(
        0.2,
        gt=0,
        le=1,
        description="share of the time /explain requests may take together, after a burst of "
        "one second; beyond: 503 overloaded",
    )

    default_top_k: int = Field(3, ge=1)
    log_level: str = Field("INFO", pattern="^(DEBUG|INFO|WARNING|ERROR|CRITICAL)$")
    api_key: SecretStr | None = Field(None, description="when set, /predict needs it")
    admin_key: SecretStr | None = Field(
        None,
        description="when set, PUT /admin/default-version with it (X-Admin-Key) switches the "
        "default version without a restart; unset: no admin calls",
    )
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="allowed CORS origins: a JSON list or comma-separated"
    )

    @field_validator("log_level", mode="before")
    @classmethod
    def _level(cls, value: Any) -> Any:
        # `info` and `INFO` are the same level to Python's logging and to uvicorn.
        return value.strip().upper() if isinstance(value, str) else value

    @field_validator("cors_origins", "model_versions", mode="before")
    @classmethod
    def _list(cls, value: Any) -> Any:
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                return json.loads(text)
            return [part.strip() for part in text.split(",") if part.strip()]
        return value

    @model_validator(mode="after")
    def _check(self) -> Settings:
        if "*" in self.cors_origins:
            raise ValueError("POSTER_CORS_ORIGINS must list origins explicitly, not '*'")
        if self.metrics_port == self.port:
            raise ValueError(f"POSTER_METRICS_PORT must differ from POSTER_PORT ({self.port})")
        largest = MAX_BODY_COPIES * max(self.max_upload_bytes, self.max_batch_upload_bytes)
        if self.max_inflight_body_mb is not None and self.max_inflight_body_mb * MIB < largest:
            # Otherwise the largest allowed upload could never be received, even on an idle server.
            raise ValueError(
                f"POSTER_MAX_INFLIGHT_BODY_MB ({self.max_inflight_body_mb}) must hold one "
                f"largest upload charged three times: at least {-(-largest // MIB)}"
            )
        batch_places = int(self.max_batch_share * self.max_queue)
        if self.max_batch_files > batch_places:
            # Otherwise a full-size batch could never be admitted, even on an idle server.
            raise ValueError(
                f"POSTER_MAX_BATCH_FILES ({self.max_batch_files}) is more than batches may hold "
                f"of the queue: POSTER_MAX_BATCH_SHARE x POSTER_MAX_QUEUE = {self.max_batch_share}"
                f" x {self.max_queue} = {batch_places}"
            )
        for name, secret in (
            ("POSTER_API_KEY", self.api_key),
            ("POSTER_ADMIN_KEY", self.admin_key),
        ):
            key = secret.get_secret_value() if secret is not None else None
            if key is not None and len(key.strip()) < MIN_API_KEY_LENGTH:
                # An empty key (an unset variable in an env file) must never mean "anyone may".
                raise ValueError(
                    f"{name} must be at least {MIN_API_KEY_LENGTH} characters "
                    f"(got {len(key.strip())}); leave it unset to run without a key"
                )
        if (
            self.admin_key is not None
            and self.api_key is not None
            and (self.admin_key.get_secret_value() == self.api_key.get_secret_value())
        ):
            raise ValueError("POSTER_ADMIN_KEY must differ from POSTER_API_KEY")
        if "all" in self.model_versions and len(self.model_versions) > 1:
            raise ValueError("POSTER_MODEL_VERSIONS is either `all` or a list of versions")
        return self

    @property
    def inflight_body_bytes(self) -> int:
        """The body budget in bytes: the setting, or a quarter of the memory limit."""
        largest = max(self.max_upload_bytes, self.max_batch_upload_bytes)
        return (self.max_inflight_body_mb or default_budget_mb(largest)) * MIB


def describe_settings_error(exc: ValidationError | SettingsError) -> str:
    """One line naming the variable and what is wrong with it, for start-up failures."""
    if isinstance(exc, SettingsError):
        return str(exc)
    problems = []
    for error in exc.errors():
        field = str(error["loc"][0]) if error["loc"] else ""
        message = error["msg"].removeprefix("Value error, ")
        if field:
            shown = error.get("input")
            problems.append(f"POSTER_{field.upper()}={shown!r}: {message}")
        else:
            problems.append(message)
    return "; ".join(problems)


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings, read from the environment once."""
    return Settings()
