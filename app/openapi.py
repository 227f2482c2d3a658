"""The OpenAPI schema, told exactly: what FastAPI cannot infer from the route signatures.

/predict and /explain take a multipart form with a required, non-empty `file`, or a raw image body,
so their signatures have an optional file; /explain's `genre` is one of the served model's genres;
/predict/batch takes 1 to POSTER_MAX_BATCH_FILES files; `top_k` runs from 1 to the served model's
genre count. Schema-valid requests are accepted.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI

POSTER_FILE: dict[str, Any] = {
    "type": "string",
    "format": "binary",
    "contentMediaType": "application/octet-stream",
    "minLength": 1,
    "description": "a JPEG, PNG, WebP or GIF poster (the bytes decide the format)",
}


def _top_k(n_genres: int | None) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "integer", "minimum": 1, "title": "Top K"}
    if n_genres:
        schema["maximum"] = n_genres
    return schema


def honest_openapi(app: FastAPI, max_batch_files: int) -> Callable[[], dict[str, Any]]:
    """A replacement for `app.openapi` that patches the generated schema once the model is known."""

    def build() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = FastAPI.openapi(app)
        app.openapi_schema = None  # FastAPI cached the unpatched one; ours replaces it below
        service = getattr(app.state, "service", None)
        n_genres = len(service.classifier.genres) if service is not None else None
        single = schema["paths"]["/predict"]["post"]
        explain = schema["paths"]["/explain"]["post"]
        for operation in (single, explain):
            operation["requestBody"]["required"] = True
            operation["requestBody"]["content"]["multipart/form-data"]["schema"] = {
                "type": "object",
                "required": ["file"],
                "properties": {"file": POSTER_FILE},
            }
        batch = schema["paths"]["/predict/batch"]["post"]
        batch["requestBody"]["content"]["multipart/form-data"]["schema"] = {
            "type": "object",
            "required": ["files"],
            "properties": {
                "files": {
                    "type": "array",
                    "items": POSTER_FILE,
                    "minItems": 1,
                    "maxItems": max_batch_files,
                    "description": "posters, in order",
                }
            },
        }
        for operation in (single, batch):
            for parameter in operation.get("parameters", []):
                if parameter["name"] == "top_k":
                    parameter["schema"] = _top_k(n_genres)
        if service is not None:
            for parameter in explain.get("parameters", []):
                if parameter["name"] == "genre":
                    parameter["schema"] = {"type": "string", "enum": service.classifier.genres}
        components = schema.get("components", {}).get("schemas", {})
        unused_bodies = (
            "Body_predict_predict_post",
            "Body_predict_batch_predict_batch_post",
            "Body_explain_explain_post",
        )
        for unused in unused_bodies:
            components.pop(unused, None)
        if n_genres is not None:  # complete only once the model is loaded
            app.openapi_schema = schema
        return schema

    return build
