"""The Open Inference Protocol's infer messages (KServe's "V2" REST API), with Triton's binary
tensor data extension: parsing a request into posters, and writing the answer.

The model takes one input and gives two outputs:
- `image`: BYTES `[n]` (or `[n, 1]`), one encoded poster per element, as OpenVINO Model Server
  accepts images. As binary data (4-byte little-endian length, then the bytes, per element), which
  is how Triton's and KServe's clients send bytes; or in JSON as base64 strings marked
  `parameters: {"content_type": "base64"}` (MLServer's convention), since JSON strings cannot carry
  raw bytes.
- `probabilities`: FP32 `[n, N]` in the version's genre order; `predicted`: BYTES `[n]`, each the
  poster's predicted genres as a JSON list.

Binary data follows the JSON header, whose length is in `Inference-Header-Content-Length`; the
answer does the same when any output is asked for as binary (`binary_data` on the output, or
`binary_data_output` on the request). Everything here is pure: bytes in, bytes out.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from starlette._utils import get_route_path
from starlette.types import Scope

from app.errors import TooManyFiles
from poster_genres.errors import PosterGenresError

PREFIX = "/v2"
HEADER_LENGTH = "Inference-Header-Content-Length"
# The JSON before binary data describes one input and two outputs: a few hundred bytes.
MAX_JSON_HEADER = 64 * 1024
MAX_JSON_STRUCTURE = 4096
MAX_ID = 256
_LENGTH_VALUE = re.compile(r"[0-9]{1,12}")
INPUT = "image"
OUTPUTS = ("probabilities", "predicted")
EXTENSIONS = ("binary_tensor_data",)
_LENGTH = struct.Struct("<I")


def speaks_protocol(scope: Scope) -> bool:
    """Whether a request is the protocol's (under /v2), and is answered in its shape."""
    path = get_route_path(scope) if "path" in scope else ""
    return path == PREFIX or path.startswith(PREFIX + "/")


class InvalidRequest(PosterGenresError):
    """An infer request the protocol does not allow, or this model cannot take (400)."""

    code = "invalid_request"


@dataclass(frozen=True)
class InferRequest:
    """What an infer request asks: its id (echoed), the posters, and each output wanted, with
    whether it is to be binary."""

    id: str | None
    images: list[bytes]
    outputs: dict[str, bool]


def header_length(value: str | None, body_length: int | None) -> int | None:
    """`Inference-Header-Content-Length` checked against the body's length (when known): None
    when absent; InvalidRequest when it is not a length within the body."""
    if value is None:
        return None
    if not _LENGTH_VALUE.fullmatch(value) or (body_length is not None and int(value) > body_length):
        raise InvalidRequest(f"{HEADER_LENGTH} must be a length within the body.")
    if int(value) > MAX_JSON_HEADER:
        raise InvalidRequest(
            f"{HEADER_LENGTH} is at most {MAX_JSON_HEADER // 1024} KiB: the JSON describes the "
            "tensors, the posters follow it as binary data."
        )
    return int(value)


def _json_object(data: bytes) -> dict[str, Any]:
    # Checked on the bytes, before parsing: what a request can make json.loads build. A real
    # request has a few dozen brackets and one comma per poster; millions of `{}` or `0,` would
    # cost seconds and 27 times their size in objects. Past the header size, only ASCII (base64),
    # since one emoji makes Python hold every character of a string in 4 bytes.
    structure = data.count(b"[") + data.count(b"{") + data.count(b",")
    if structure > MAX_JSON_STRUCTURE:
        raise InvalidRequest(
            f"The request's JSON has more than {MAX_JSON_STRUCTURE} arrays, objects and values; "
            "send posters as base64 strings or binary data."
        )
    if len(data) > MAX_JSON_HEADER and not data.isascii():
        raise InvalidRequest(
            f"A JSON request over {MAX_JSON_HEADER // 1024} KiB must be ASCII (base64 posters)."
        )
    try:
        parsed = json.loads(data)
    except (UnicodeDecodeError, ValueError, RecursionError):  # RecursionError: nesting too deep
        raise InvalidRequest("The request's JSON cannot be parsed.") from None
    if not isinstance(parsed, dict):
        raise InvalidRequest("The request must be a JSON object.")
    return parsed


def _shown(value: Any) -> str:
    """A client's value in a message: a short string as it is, anything else by its type."""
    if isinstance(value, str) and len(value) <= 40:
        return repr(value)
    return f"(a {type(value).__name__})"


def _parameters(item: dict[str, Any]) -> dict[str, Any]:
    parameters = item.get("parameters", {})
    if not isinstance(parameters, dict):
        raise InvalidRequest("'parameters' must be an object.")
    return parameters


def _flatten(data: Any) -> Iterator[Any]:
    """The leaves of nested lists, in order; iterative, since JSON nests as deep as it likes."""
    stack = [iter([data])]
    while stack:
        item = next(stack[-1], _END)
        if item is _END:
            stack.pop()
        elif isinstance(item, list):
            stack.append(iter(item))
        else:
            yield item


_END = object()


def _count(shape: Any, max_images: int) -> int:
    if (
        not isinstance(shape, list)
        or not 1 <= len(shape) <= 2
        or not all(isinstance(d, int) and not isinstance(d, bool) for d in shape)
        or (len(shape) == 2 and shape[1] != 1)
    ):
        raise InvalidRequest(f"Input '{INPUT}' has shape [n] (or [n, 1]).")
    n = int(shape[0])
    if n < 1:
        raise InvalidRequest(f"Input '{INPUT}' needs at least one poster.")
    if n > max_images:
        raise TooManyFiles(f"At most {max_images} posters per request, got {n}.")
    return n


def _binary_elements(blob: bytes, n: int) -> list[bytes]:
    elements: list[bytes] = []
    position = 0
    while position < len(blob):
        if len(elements) == n:
            raise InvalidRequest(f"The binary data holds more elements than the shape's {n}.")
        if position + _LENGTH.size > len(blob):
            raise InvalidRequest("The binary data ends inside an element's length.")
        (size,) = _LENGTH.unpack_from(blob, position)
        position += _LENGTH.size
        if position + size > len(blob):
            raise InvalidRequest("The binary data ends inside an element.")
        elements.append(blob[position : position + size])
        position += size
    if len(elements) != n:
        raise InvalidRequest(f"The binary data holds {len(elements)} elements; the shape says {n}.")
    return elements


def _json_elements(data: Any, parameters: dict[str, Any], n: int) -> list[bytes]:
    if parameters.get("content_type") != "base64":
        raise InvalidRequest(
            f"Posters in JSON must be base64 strings with parameters.content_type 'base64' on "
            f"input '{INPUT}'; or send them as binary data ({HEADER_LENGTH})."
        )
    values = list(_flatten(data))
    if len(values) != n or not all(isinstance(v, str) for v in values):
        raise InvalidRequest(f"Input '{INPUT}' needs {n} base64 strings, as its shape says.")
    try:
        return [base64.b64decode(v, validate=True) for v in values]
    except (binascii.Error, ValueError):
        raise InvalidRequest(f"Input '{INPUT}' holds a string that is not base64.") from None


def _requested_outputs(request: dict[str, Any]) -> dict[str, bool]:
    default = _parameters(request).get("binary_data_output", False)
    if not isinstance(default, bool):
        raise InvalidRequest("parameters.binary_data_output must be true or false.")
    asked = request.get("outputs")
    if asked is None:
        return dict.fromkeys(OUTPUTS, default)
    if not isinstance(asked, list) or not all(isinstance(o, dict) for o in asked):
        raise InvalidRequest("'outputs' must be a list of objects.")
    wanted: dict[str, bool] = {}
    for output in asked:
        name = output.get("name")
        if name not in OUTPUTS:
            raise InvalidRequest(f"Unknown output {_shown(name)}; the outputs are {OUTPUTS}.")
        binary = _parameters(output).get("binary_data", default)
        if not isinstance(binary, bool):
            raise InvalidRequest("parameters.binary_data must be true or false.")
        wanted[name] = binary
    return wanted


def parse_infer_request(body: bytes, json_length: int | None, max_images: int) -> InferRequest:
    """The posters and wishes of an infer request: `body` whole, `json_length` from
    `Inference-Header-Content-Length` (None: all of it is JSON). InvalidRequest (400) or
    TooManyFiles (422) when it cannot be taken."""
    header = _json_object(body if json_length is None else body[:json_length])
    binary = b"" if json_length is None else body[json_length:]
    inputs = header.get("inputs")
    if not isinstance(inputs, list) or len(inputs) != 1 or not isinstance(inputs[0], dict):
        raise InvalidRequest(f"The request needs exactly one input, '{INPUT}'.")
    given = inputs[0]
    if given.get("name") != INPUT:
        raise InvalidRequest(f"Unknown input {_shown(given.get('name'))}; the input is '{INPUT}'.")
    if given.get("datatype") != "BYTES":
        raise InvalidRequest(f"Input '{INPUT}' is BYTES, got {_shown(given.get('datatype'))}.")
    n = _count(given.get("shape"), max_images)
    parameters = _parameters(given)
    size = parameters.get("binary_data_size")
    if size is not None:
        if not isinstance(size, int) or isinstance(size, bool) or size != len(binary):
            raise InvalidRequest(
                f"binary_data_size must be the {len(binary)} bytes that follow the JSON."
            )
        images = _binary_elements(binary, n)
    elif binary:
        raise InvalidRequest("Binary data follows the JSON, but no input has binary_data_size.")
    else:
        images = _json_elements(given.get("data"), parameters, n)
    request_id = header.get("id")
    if request_id is not None and (not isinstance(request_id, str) or len(request_id) > MAX_ID):
        raise InvalidRequest(f"'id' must be a string of at most {MAX_ID} characters.")
    return InferRequest(request_id, images, _requested_outputs(header))


def _bytes_blob(elements: list[bytes]) -> bytes:
    return b"".join(_LENGTH.pack(len(e)) + e for e in elements)


def encode_infer_response(
    request: InferRequest,
    model_name: str,
    model_version: str,
    probabilities: np.ndarray,
    predicted: list[list[str]],
) -> tuple[bytes, dict[str, str]]:
    """The answer's body and its headers: `probabilities` (n, N) and each poster's predicted
    genres, as the request's outputs ask."""
    tensors: dict[str, tuple[str, list[int], list[Any], bytes]] = {}
    if "probabilities" in request.outputs:
        values = probabilities.astype("<f4")
        tensors["probabilities"] = (
            "FP32",
            list(values.shape),
            [float(v) for v in values.ravel()],
            values.tobytes(),
        )
    if "predicted" in request.outputs:
        texts = [json.dumps(genres) for genres in predicted]
        tensors["predicted"] = (
            "BYTES",
            [len(texts)],
            texts,
            _bytes_blob([t.encode() for t in texts]),
        )
    outputs, blobs = [], []
    for name, (datatype, shape, data, blob) in tensors.items():
        output: dict[str, Any] = {"name": name, "datatype": datatype, "shape": shape}
        if request.outputs[name]:
            output["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            output["data"] = data
        outputs.append(output)
    answer: dict[str, Any] = {"model_name": model_name, "model_version": model_version}
    if request.id is not None:
        answer["id"] = request.id
    answer["outputs"] = outputs
    header = json.dumps(answer, separators=(",", ":")).encode()
    if not blobs:
        return header, {"Content-Type": "application/json"}
    headers = {"Content-Type": "application/octet-stream", HEADER_LENGTH: str(len(header))}
    return header + b"".join(blobs), headers


def error_body(message: str) -> dict[str, str]:
    """The protocol's error shape."""
    return {"error": message}
