"""The Open Inference Protocol: its messages (app/open_inference.py) and its routes, in process.
Real clients (tritonclient, KServe's) drive a real server in tests/test_protocol_clients.py."""

from __future__ import annotations

import base64
import json
import struct
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from app.errors import TooManyFiles
from app.main import create_app
from app.open_inference import (
    InferRequest,
    InvalidRequest,
    encode_infer_response,
    header_length,
    parse_infer_request,
)
from poster_genres.decision import shown
from tests.conftest import make_settings, poster_bytes

POSTERS = [poster_bytes(colour, size=(120, 180)) for colour in ((200, 30, 30), (30, 30, 200))]
INFER = "/v2/models/poster-genres/infer"
KEY = "a-client-key-of-16+"


def json_request(posters: list[bytes], **extra: Any) -> dict[str, Any]:
    image = {
        "name": "image",
        "shape": [len(posters)],
        "datatype": "BYTES",
        "parameters": {"content_type": "base64"},
        "data": [base64.b64encode(p).decode() for p in posters],
    }
    return {"inputs": [image], **extra}


def binary_request(posters: list[bytes], **extra: Any) -> tuple[bytes, dict[str, str]]:
    blob = b"".join(struct.pack("<I", len(p)) + p for p in posters)
    image = {"name": "image", "shape": [len(posters)], "datatype": "BYTES"}
    image["parameters"] = {"binary_data_size": len(blob)}
    header = json.dumps({"inputs": [image], **extra}).encode()
    return header + blob, {"Inference-Header-Content-Length": str(len(header))}


@pytest.fixture(scope="module")
def served(two_version_store: Path) -> Any:
    settings = make_settings(two_version_store, model_version="tiny", model_versions=["tiny-b"])
    with TestClient(create_app(settings)) as client:
        yield client


def test_health_and_metadata(served: TestClient) -> None:
    assert served.get("/v2").json()["extensions"] == ["binary_tensor_data"]
    assert served.get("/v2/health/live").json() == {"live": True}
    assert served.get("/v2/health/ready").json() == {"ready": True}
    model = served.get("/v2/models/poster-genres").json()
    assert model["versions"] == ["tiny", "tiny-b"]
    assert model["inputs"] == [{"name": "image", "datatype": "BYTES", "shape": [-1]}]
    assert model["outputs"][0] == {"name": "probabilities", "datatype": "FP32", "shape": [-1, 4]}
    assert served.get("/v2/models/poster-genres/versions/tiny-b").json()["versions"] == ["tiny-b"]
    ready = served.get("/v2/models/poster-genres/versions/tiny-b/ready")
    assert ready.json() == {"name": "poster-genres", "ready": True}
    for path in ("/v2/models/other", "/v2/models/poster-genres/versions/v9/ready"):
        answer = served.get(path)
        assert answer.status_code == 404
        assert set(answer.json()) == {"error"}


def test_json_infer_equals_predict(served: TestClient) -> None:
    answer = served.post(INFER, json=json_request(POSTERS, id="req-7"))
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "application/json"
    body = answer.json()
    assert (body["model_name"], body["model_version"], body["id"]) == (
        "poster-genres",
        "tiny",
        "req-7",
    )
    probabilities, predicted = body["outputs"]
    assert probabilities["shape"] == [2, 4] and predicted["shape"] == [2]
    rows = np.asarray(probabilities["data"], dtype=np.float32).reshape(2, 4)
    for poster, row, genres in zip(POSTERS, rows, predicted["data"], strict=True):
        expected = served.post("/predict", files={"file": ("p.jpg", poster)}).json()
        assert [shown(p) for p in row] == [p["probability"] for p in expected["probabilities"]]
        assert json.loads(genres) == [p["genre"] for p in expected["predicted"]]


def test_binary_infer_of_a_version_with_binary_outputs(served: TestClient) -> None:
    body, headers = binary_request(POSTERS, parameters={"binary_data_output": True})
    answer = served.post(
        "/v2/models/poster-genres/versions/tiny-b/infer", content=body, headers=headers
    )
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "application/octet-stream"
    length = int(answer.headers["inference-header-content-length"])
    header = json.loads(answer.content[:length])
    assert header["model_version"] == "tiny-b" and "id" not in header
    sizes = [o["parameters"]["binary_data_size"] for o in header["outputs"]]
    assert sizes[0] == 2 * 4 * 4 and length + sum(sizes) == len(answer.content)
    rows = np.frombuffer(answer.content[length : length + sizes[0]], dtype="<f4").reshape(2, 4)
    first = served.post("/predict?version=tiny-b", files={"file": ("p.jpg", POSTERS[0])}).json()
    assert [shown(p) for p in rows[0]] == [p["probability"] for p in first["probabilities"]]
    blob = answer.content[length + sizes[0] :]
    (size,) = struct.unpack_from("<I", blob)
    assert json.loads(blob[4 : 4 + size]) == [p["genre"] for p in first["predicted"]]


def test_only_the_outputs_asked_for_are_returned(served: TestClient) -> None:
    wanted = [{"name": "predicted", "parameters": {"binary_data": False}}]
    answer = served.post(INFER, json=json_request(POSTERS[:1], outputs=wanted))
    assert [o["name"] for o in answer.json()["outputs"]] == ["predicted"]


@pytest.mark.parametrize(
    ("request_body", "status", "phrase"),
    [
        (json_request([b"not an image"]), 400, "Poster 0: "),
        ({"inputs": [{"name": "image", "shape": [1], "datatype": "BYTES", "data": ["x"]}]}, 400, "base64"),
        ({"inputs": [{"name": "pixels", "shape": [1], "datatype": "BYTES"}]}, 400, "Unknown input"),
        (json_request(POSTERS, outputs=[{"name": "logits"}]), 400, "Unknown output"),
        (json_request(POSTERS * 20), 422, "At most 32 posters"),
    ],
)  # fmt: skip
def test_bad_requests_get_the_protocols_error_shape(
    served: TestClient, request_body: dict[str, Any], status: int, phrase: str
) -> None:
    answer = served.post(INFER, json=request_body)
    assert answer.status_code == status
    assert set(answer.json()) == {"error"} and phrase in answer.json()["error"]


def test_a_header_length_past_the_body_is_refused(served: TestClient) -> None:
    body, _ = binary_request(POSTERS[:1])
    answer = served.post(
        INFER, content=body, headers={"Inference-Header-Content-Length": "9999999"}
    )
    assert answer.status_code == 400 and "within the body" in answer.json()["error"]


def test_infer_needs_the_key_and_is_refused_from_its_headers(tiny_store: Path) -> None:
    settings = make_settings(tiny_store, api_key=KEY, max_batch_upload_bytes=4000)
    with TestClient(create_app(settings)) as client:
        answer = client.post(INFER, json=json_request(POSTERS[:1]))
        assert answer.status_code == 401 and set(answer.json()) == {"error"}
        assert client.get("/v2/models/poster-genres").status_code == 200  # metadata stays open
        big, headers = binary_request([b"x" * 5000])
        answer = client.post(INFER, content=big, headers={**headers, "X-API-Key": KEY})
        assert answer.status_code == 413 and "limit" in answer.json()["error"]


def test_parse_reads_nested_json_data_and_mlserver_shapes() -> None:
    encoded = [[base64.b64encode(b"a").decode()], [base64.b64encode(b"bc").decode()]]
    request = {"inputs": [{"name": "image", "shape": [2, 1], "datatype": "BYTES",
                           "parameters": {"content_type": "base64"}, "data": encoded}]}  # fmt: skip
    parsed = parse_infer_request(json.dumps(request).encode(), None, 8)
    assert parsed.images == [b"a", b"bc"]
    assert parsed.outputs == {"probabilities": False, "predicted": False}


@pytest.mark.parametrize(
    "blob",
    [b"\x05\x00\x00\x00abc", b"\x01\x00", b"\x01\x00\x00\x00a\x01\x00\x00\x00b"],
    ids=["short element", "short length", "more elements than the shape"],
)
def test_parse_refuses_binary_data_that_does_not_add_up(blob: bytes) -> None:
    image = {"name": "image", "shape": [1], "datatype": "BYTES"}
    image["parameters"] = {"binary_data_size": len(blob)}
    header = json.dumps({"inputs": [image]}).encode()
    with pytest.raises(InvalidRequest):
        parse_infer_request(header + blob, len(header), 8)


def test_parse_counts_posters_against_the_batch_limit() -> None:
    with pytest.raises(TooManyFiles):
        parse_infer_request(json.dumps(json_request([b"a"] * 9)).encode(), None, 8)


def test_encoding_mixes_json_and_binary_outputs() -> None:
    request = InferRequest("x", [b"a"], {"probabilities": True, "predicted": False})
    body, headers = encode_infer_response(
        request, "m", "v", np.array([[0.5, 0.25]], dtype=np.float32), [["A"]]
    )
    length = int(headers["Inference-Header-Content-Length"])
    header = json.loads(body[:length])
    assert header["outputs"][1] == {
        "name": "predicted",
        "datatype": "BYTES",
        "shape": [1],
        "data": ['["A"]'],
    }
    assert np.frombuffer(body[length:], dtype="<f4").tolist() == [0.5, 0.25]


def test_json_nested_past_any_depth_is_a_400_not_a_crash() -> None:
    deep = "[" * 3_000 + "]" * 3_000  # under the structure cap, past json's recursion limit
    body = (
        '{"inputs": [{"name": "image", "shape": [1], "datatype": "BYTES", "data": ' + deep + "}]}"
    )
    with pytest.raises(InvalidRequest, match="cannot be parsed"):
        parse_infer_request(body.encode(), None, 8)
    deeper = "[" * 100_000 + "]" * 100_000
    with pytest.raises(InvalidRequest, match="arrays, objects and values"):
        parse_infer_request(deeper.encode(), None, 8)
    nested = {"inputs": [{"name": "image", "shape": [1], "datatype": "BYTES",
                          "parameters": {"content_type": "base64"}, "data": []}]}  # fmt: skip
    value: Any = base64.b64encode(b"poster").decode()
    for _ in range(900):  # within what json reads, past Python's recursion limit when walked
        value = [value]
    nested["inputs"][0]["data"] = value
    assert parse_infer_request(json.dumps(nested).encode(), None, 8).images == [b"poster"]


@pytest.mark.parametrize(
    ("body", "phrase"),
    [
        (b'{"inputs": [' + b"0," * 5000 + b"0]}", "arrays, objects and values"),
        (b'{"inputs": [' + b"{}," * 5000 + b"{}]}", "arrays, objects and values"),
        (b'{"id": "' + "\u00e9".encode() * 70_000 + b'", "inputs": []}', "must be ASCII"),
        (json.dumps(json_request([b"a"], id="x" * 300)).encode(), "at most 256 characters"),
    ],
    ids=["many values", "many objects", "large and not ASCII", "a long id"],
)
def test_json_that_would_cost_more_than_posters_is_refused_before_parsing(
    body: bytes, phrase: str
) -> None:
    with pytest.raises(InvalidRequest, match=phrase):
        parse_infer_request(body, None, 32)


@pytest.mark.parametrize("value", ["\u00b2", "1" * 20, "-1", "99999"])
def test_a_header_length_that_is_not_a_small_length_is_refused(value: str) -> None:
    with pytest.raises(InvalidRequest):
        header_length(value, 100_000)


def test_binary_data_with_more_elements_than_the_shape_stops_at_once() -> None:
    blob = struct.pack("<I", 0) * 2_000_000  # 8 MB of empty elements
    image = {"name": "image", "shape": [1], "datatype": "BYTES"}
    image["parameters"] = {"binary_data_size": len(blob)}
    header = json.dumps({"inputs": [image]}).encode()
    with pytest.raises(InvalidRequest, match="more elements than the shape's 1"):
        parse_infer_request(header + blob, len(header), 32)


def test_an_infer_request_holds_one_batch_place_until_its_posters_are_counted(
    served: TestClient,
) -> None:
    gate = served.app.state.service.gate  # type: ignore[attr-defined]  # a FastAPI app
    first = gate.hold_batch_places(1)
    second = gate.hold_batch_places(1)  # a second upload is admitted meanwhile
    first.need(8)
    assert first.held == 8
    second.need(24)
    from app.errors import Overloaded

    with pytest.raises(Overloaded):
        gate.hold_batch_places(1)  # 32 of 32 places held
    first.release()
    second.release()
    assert served.post(INFER, json=json_request(POSTERS)).status_code == 200


def test_protocol_errors_are_counted_by_code(served: TestClient) -> None:
    served.post("/v2/models/poster-genres/versions/v9/infer", json=json_request(POSTERS[:1]))
    text = served.get("/metrics").text
    route = "/v2/models/{name}/versions/{version}/infer"
    assert f'poster_errors_total{{code="unknown_version",route="{route}"}} 1.0' in text
