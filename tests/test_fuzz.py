"""Fuzzing: the service against its own OpenAPI schema, and the decoder against mutated images."""

from __future__ import annotations

import io
from pathlib import Path

import schemathesis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from app.main import create_app
from poster_genres.errors import DECODE_ERRORS
from poster_genres.preprocessing import decode_poster, to_model_input
from tests.conftest import make_settings, poster_bytes

# What the schema can promise. "Schema-valid data is accepted" cannot hold: a schema has no way to
# say "these bytes must be a decodable poster", so random bytes are rightly answered 400.
CONFORMANCE = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


def test_api_conforms_to_its_schema_and_never_fails(tiny_store: Path) -> None:
    """Every operation, at least 100 generated requests where the inputs allow as many: no 5xx, and
    every answer (status, content type, body) as the schema declares."""
    # An app of its own: schemathesis runs the app's lifespan, which must not unload the shared one.
    app = create_app(make_settings(tiny_store))
    with TestClient(app):
        _fuzz_every_operation(app)


def _fuzz_every_operation(app: FastAPI) -> None:
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    examples: dict[str, int] = {}
    for result in schema.get_all_operations():
        operation = result.ok()

        @settings(
            max_examples=100,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
            database=None,
        )
        @given(case=operation.as_strategy())
        def check(case: schemathesis.Case) -> None:
            examples[case.operation.label] = examples.get(case.operation.label, 0) + 1
            response = case.call()
            assert response.status_code < 500, response.text
            case.validate_response(response, checks=CONFORMANCE)

        check()
    assert examples["POST /predict"] >= 100
    assert examples["POST /predict/batch"] >= 100
    assert len(examples) == 8


def _seed_images() -> list[bytes]:
    frames = [Image.new("RGB", (12, 12), c) for c in ((255, 0, 0), (0, 0, 255))]
    animated = io.BytesIO()
    frames[0].save(animated, format="GIF", save_all=True, append_images=frames[1:])
    return [
        poster_bytes(size=(24, 36)),
        poster_bytes(size=(24, 36), fmt="PNG", square=True),
        poster_bytes(size=(24, 36), fmt="WEBP"),
        poster_bytes(size=(24, 36), fmt="PNG", mode="RGBA"),
        poster_bytes(size=(24, 36), fmt="JPEG", mode="CMYK"),
        animated.getvalue(),
    ]


SEEDS = _seed_images()


@st.composite
def mutated_images(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 6))):
        action = draw(st.sampled_from(["flip", "truncate", "insert", "delete"]))
        position = draw(st.integers(0, max(0, len(data) - 1)))
        if action == "flip" and data:
            data[position] ^= draw(st.integers(1, 255))
        elif action == "truncate":
            del data[position:]
        elif action == "insert":
            data[position:position] = draw(st.binary(min_size=1, max_size=16))
        elif data:
            del data[position : position + draw(st.integers(1, 16))]
    return bytes(data)


@settings(max_examples=2000, deadline=None, derandomize=True)
@given(mutated_images())
def test_decoder_fails_only_with_documented_errors(data: bytes) -> None:
    try:
        array = to_model_input(decode_poster(data).image)
    except DECODE_ERRORS:
        return
    assert array.shape == (400, 400, 3)
