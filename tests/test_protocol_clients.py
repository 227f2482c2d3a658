"""Triton's and KServe's own Python clients drive a real server over the Open Inference
Protocol: readiness and metadata, infer with 1 and 8 posters in binary and in base64 JSON, a
corrupt poster's error, and 404 for an unknown model or version. Their probabilities, rounded as
/predict rounds them, and their predicted lists equal /predict's.

The clients run in a virtualenv of their own (tests/client_venv.py): they pin versions that
conflict with requirements.lock. Making it needs PyPI the first time; without it the test skips
locally and fails under CI=true.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from poster_genres.decision import shown
from tests.client_venv import client_python
from tests.conftest import IN_CI, poster_bytes
from tests.service_process import RunningService, running_service

pytestmark = pytest.mark.slow
KEY = "a-client-key-of-16+"
CHECK = Path(__file__).with_name("protocol_clients_check.py")
COLOURS = [(200, 30, 30), (30, 30, 200), (30, 200, 30), (220, 220, 30)]


@pytest.fixture(scope="module")
def service(two_version_store: Path) -> Iterator[RunningService]:
    env = {"POSTER_API_KEY": KEY, "POSTER_MODEL_VERSION": "tiny", "POSTER_MODEL_VERSIONS": "tiny-b"}
    with running_service(two_version_store, env) as running:
        yield running


@pytest.fixture(scope="module")
def posters(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    folder = tmp_path_factory.mktemp("posters")
    paths = []
    for i in range(8):
        path = folder / f"p{i}.jpg"
        path.write_bytes(poster_bytes(COLOURS[i % 4], size=(100 + 10 * i, 150)))
        paths.append(path)
    return paths


@pytest.fixture(scope="module")
def report(service: RunningService, posters: list[Path]) -> dict[str, Any]:
    try:
        python = client_python()
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        if IN_CI:
            pytest.fail(f"the protocol clients' virtualenv cannot be made: {exc}")
        pytest.skip(f"the protocol clients' virtualenv cannot be made (PyPI?): {exc}")
    address = f"127.0.0.1:{service.port}"
    argv = [str(python), str(CHECK), address, KEY, "tiny-b", *map(str, posters)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    parsed: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return parsed


def predicted_by_predict(service: RunningService, posters: list[Path], version: str) -> Any:
    answers = []
    for path in posters:
        answer = httpx.post(
            f"{service.url}/predict?version={version}",
            files={"file": (path.name, path.read_bytes())},
            headers={"X-API-Key": KEY},
            timeout=30,
        ).json()
        probabilities = [p["probability"] for p in answer["probabilities"]]
        answers.append((probabilities, [p["genre"] for p in answer["predicted"]]))
    return answers


def assert_same_as_predict(result: dict[str, Any], expected: list[Any]) -> None:
    assert len(result["probabilities"]) == len(expected)
    for row, genres, (probabilities, predicted) in zip(
        result["probabilities"], result["predicted"], expected, strict=True
    ):
        assert [shown(p) for p in row] == probabilities
        assert genres == predicted


def test_tritonclient_reads_health_and_metadata(report: dict[str, Any]) -> None:
    triton = report["triton"]
    assert triton["live"] and triton["ready"] and triton["model_ready"]
    assert triton["version_ready"] and not triton["unknown_version_ready"]
    assert "binary_tensor_data" in triton["server"]["extensions"]
    assert triton["model"]["versions"] == ["tiny", "tiny-b"]
    assert triton["model"]["inputs"] == [{"name": "image", "datatype": "BYTES", "shape": [-1]}]


def test_tritonclient_infers_as_predict_answers(
    report: dict[str, Any], service: RunningService, posters: list[Path]
) -> None:
    triton = report["triton"]
    expected = predicted_by_predict(service, posters, "tiny")
    assert_same_as_predict(triton["one_binary"], expected[:1])
    assert_same_as_predict(triton["eight_binary"], expected)
    assert_same_as_predict(triton["eight_json_outputs"], expected)
    assert triton["eight_binary"]["id"] == "triton-1"
    of_version = triton["eight_of_version"]
    assert of_version["version"] == "tiny-b"
    assert_same_as_predict(of_version, predicted_by_predict(service, posters, "tiny-b"))


def test_tritonclient_sees_the_errors(report: dict[str, Any]) -> None:
    errors = report["triton"]["errors"]
    assert errors["corrupt"]["status"] == "400"
    assert errors["corrupt"]["message"].startswith("Poster 0: ")
    assert errors["unknown_model"]["status"] == "404"
    assert errors["unknown_version"]["status"] == "404"
    assert "served: tiny, tiny-b" in errors["unknown_version"]["message"]


def test_kserve_client_infers_as_predict_answers(
    report: dict[str, Any], service: RunningService, posters: list[Path]
) -> None:
    kserve = report["kserve"]
    assert kserve["live"] and kserve["ready"] and kserve["model_ready"]
    expected = predicted_by_predict(service, posters, "tiny")
    assert_same_as_predict(kserve["eight_binary"], expected)
    assert_same_as_predict(kserve["eight_base64"], expected)
    assert_same_as_predict(kserve["one_base64"], expected[:1])
    assert kserve["eight_base64"]["id"] == "kserve-1"
    assert kserve["corrupt"]["status"] == 400
    assert "Poster 0: " in kserve["corrupt"]["message"]
