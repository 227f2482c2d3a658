"""Fuzzing: the service against its own OpenAPI schema, and the decoder against mutated images."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
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
from tests.service_process import running_service

# In process, with schemathesis' own random bytes for files: they are rightly answered 400, so
# acceptance of schema-valid data is checked from outside, with real images, further below.
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
    assert examples["POST /explain"] >= 100
    assert examples["POST /v2/models/{name}/versions/{version}/infer"] >= 100
    assert len(examples) == len(list(schema.get_all_operations()))  # every one


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


def schemathesis_cli(url: str, *options: str) -> subprocess.CompletedProcess[str]:
    st = Path(sys.executable).parent / "st"
    return subprocess.run(
        [str(st), "run", f"{url}/openapi.json", "--checks", "all", "--max-examples", "100",
         "--seed", "1", *options],
        env={**os.environ, "SCHEMATHESIS_HOOKS": "tests.schemathesis_hooks", "NO_COLOR": "1"},
        cwd=Path(__file__).resolve().parents[1],
        capture_output=True,
        text=True,
        timeout=600,
    )  # fmt: skip


@pytest.mark.slow
def test_every_check_passes_from_outside_against_a_real_server(tiny_store: Path) -> None:
    """`st run --checks all` against `python -m app`: schema-valid requests (real images from
    tests/schemathesis_hooks.py) are accepted, schema-violating ones refused, and every answer is
    as declared. /predict/batch answers 200 with a per-file error for a file that is not an
    image (its contract), so the one check that expects such a request refused is left out for
    it alone. The protocol's infer takes posters whose count must equal the shape it declares,
    which JSON Schema cannot say: there, schema-valid requests may be refused (real clients show
    what it accepts, tests/test_protocol_clients.py), and every other check holds."""
    infer = "/v2/models/.*/infer$"
    with running_service(tiny_store) as service:
        single = schemathesis_cli(
            service.url, "--exclude-path", "/predict/batch", "--exclude-path-regex", infer
        )
        batch = schemathesis_cli(
            service.url,
            "--include-path",
            "/predict/batch",
            "--exclude-checks",
            "negative_data_rejection",
        )
        protocol = schemathesis_cli(
            service.url,
            "--include-path-regex",
            infer,
            "--exclude-checks",
            "positive_data_acceptance",
        )
    for run in (single, batch, protocol):
        assert run.returncode == 0, run.stdout[-4000:]
        generated = re.search(r"(\d+) generated, (\d+) passed", run.stdout)
        assert generated and generated.group(1) == generated.group(2), run.stdout[-2000:]
        assert int(generated.group(1)) >= 50
