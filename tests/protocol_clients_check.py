"""Drives a running service with the protocol's real clients, tritonclient and KServe's
InferenceRESTClient, and prints what they got as one JSON object on stdout.

Run by tests/test_protocol_clients.py with the clients' own virtualenv (tests/client_venv.py):

    python tests/protocol_clients_check.py HOST:PORT API_KEY VERSION POSTER [POSTER ...]

It imports nothing of the project: it is what a user of those clients would write.
"""

from __future__ import annotations

import asyncio
import base64
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import tritonclient.http as triton
from kserve import InferenceRESTClient, RESTConfig
from kserve.protocol.infer_type import InferInput, InferRequest, RequestedOutput
from tritonclient.utils import InferenceServerException

MODEL = "poster-genres"


def _text(values: np.ndarray) -> list[list[str]]:
    return [json.loads(v.decode() if isinstance(v, bytes) else v) for v in values.ravel()]


def triton_side(address: str, key: str, version: str, posters: list[bytes]) -> dict[str, Any]:
    client = triton.InferenceServerClient(url=address)
    headers = {"X-API-Key": key}
    found: dict[str, Any] = {
        "live": client.is_server_live(),
        "ready": client.is_server_ready(),
        "model_ready": client.is_model_ready(MODEL),
        "version_ready": client.is_model_ready(MODEL, version),
        "unknown_version_ready": client.is_model_ready(MODEL, "no-such-version"),
        "server": client.get_server_metadata(),
        "model": client.get_model_metadata(MODEL),
    }

    def infer(batch: list[bytes], binary_outputs: bool, model_version: str = "") -> Any:
        image = triton.InferInput("image", [len(batch)], "BYTES")
        image.set_data_from_numpy(np.array(batch, dtype=np.object_), binary_data=True)
        outputs = [
            triton.InferRequestedOutput("probabilities", binary_data=binary_outputs),
            triton.InferRequestedOutput("predicted", binary_data=binary_outputs),
        ]
        result = client.infer(
            MODEL,
            [image],
            outputs=outputs,
            request_id="triton-1",
            model_version=model_version,
            headers=headers,
        )
        return {
            "id": result.get_response()["id"],
            "version": result.get_response()["model_version"],
            "probabilities": result.as_numpy("probabilities").tolist(),
            "predicted": _text(result.as_numpy("predicted")),
        }

    found["one_binary"] = infer(posters[:1], binary_outputs=True)
    found["eight_binary"] = infer(posters, binary_outputs=True)
    found["eight_json_outputs"] = infer(posters, binary_outputs=False)
    found["eight_of_version"] = infer(posters, binary_outputs=True, model_version=version)
    errors = {}
    for name, batch, model, model_version in (
        ("corrupt", [b"not a poster"], MODEL, ""),
        ("unknown_model", posters[:1], "no-such-model", ""),
        ("unknown_version", posters[:1], MODEL, "no-such-version"),
    ):
        image = triton.InferInput("image", [len(batch)], "BYTES")
        image.set_data_from_numpy(np.array(batch, dtype=np.object_), binary_data=True)
        try:
            client.infer(model, [image], model_version=model_version, headers=headers)
            errors[name] = None
        except InferenceServerException as exc:
            errors[name] = {"status": exc.status(), "message": exc.message()}
    found["errors"] = errors
    client.close()
    return found


async def kserve_side(address: str, key: str, posters: list[bytes]) -> dict[str, Any]:
    client = InferenceRESTClient(RESTConfig(protocol="v2", timeout=60))
    base = f"http://{address}"
    headers = {"X-API-Key": key}
    found: dict[str, Any] = {
        "live": await client.is_server_live(base),
        "ready": await client.is_server_ready(base),
        "model_ready": await client.is_model_ready(base, MODEL),
    }

    async def infer(image: InferInput) -> Any:
        request = InferRequest(
            model_name=MODEL,
            infer_inputs=[image],
            request_id="kserve-1",
            request_outputs=[RequestedOutput("probabilities"), RequestedOutput("predicted")],
        )
        # A copy each time: the client writes Inference-Header-Content-Length into the dict it
        # is given, which would then travel with the next, JSON-only, request.
        result = await client.infer(base, request, model_name=MODEL, headers=dict(headers))
        outputs = {output.name: output.as_numpy() for output in result.outputs}
        return {
            "id": result.id,
            "probabilities": outputs["probabilities"].tolist(),
            "predicted": _text(outputs["predicted"]),
        }

    binary = InferInput("image", [len(posters)], "BYTES")
    binary.set_data_from_numpy(np.array(posters, dtype=np.object_), binary_data=True)
    found["eight_binary"] = await infer(binary)
    encoded = [base64.b64encode(p).decode() for p in posters]
    found["eight_base64"] = await infer(
        InferInput(
            "image",
            [len(posters)],
            "BYTES",
            data=encoded,
            parameters={"content_type": "base64"},
        )
    )
    found["one_base64"] = await infer(
        InferInput("image", [1], "BYTES", data=encoded[:1], parameters={"content_type": "base64"})
    )
    corrupt = InferInput(
        "image",
        [1],
        "BYTES",
        data=[base64.b64encode(b"not a poster").decode()],
        parameters={"content_type": "base64"},
    )
    try:
        await infer(corrupt)
        found["corrupt"] = None
    except Exception as exc:  # httpx.HTTPStatusError, with the server's message
        response = getattr(exc, "response", None)
        found["corrupt"] = {
            "status": getattr(response, "status_code", None),
            "message": str(exc),
        }
    await client.close()
    return found


def main() -> int:
    address, key, version, *paths = sys.argv[1:]
    posters = [Path(path).read_bytes() for path in paths]
    report = {
        "triton": triton_side(address, key, version, posters),
        "kserve": asyncio.run(kserve_side(address, key, posters)),
    }
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
