"""The OpenAPI schema, told exactly: what FastAPI cannot infer from the route signatures.

Every upload route (`app.uploads`) takes a required, non-empty poster: one as the multipart field
`file` or as the raw body (so its signature has an optional file), or 1 to POSTER_MAX_BATCH_FILES
posters as `files`. Its request body is written from its declaration, wherever it is mounted and
whatever its path parameters. `top_k` runs from 1 to the served model's genre count, and `genre`
is one of its genres, on any route that takes them. Schema-valid requests are accepted.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI

from app.uploads import Upload, declared_uploads

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


def _form_schema(upload: Upload, max_batch_files: int) -> dict[str, Any]:
    if not upload.batch:
        return {"type": "object", "required": ["file"], "properties": {"file": POSTER_FILE}}
    files = {
        "type": "array",
        "items": POSTER_FILE,
        "minItems": 1,
        "maxItems": max_batch_files,
        "description": "posters, in order",
    }
    return {"type": "object", "required": ["files"], "properties": {"files": files}}


INFER_BODY: dict[str, Any] = {
    "required": True,
    "description": "An Open Inference Protocol infer request: input `image`, BYTES [n], one "
    "encoded poster per element, in JSON as base64 strings (parameters.content_type 'base64') "
    "or as binary tensor data after the JSON (Inference-Header-Content-Length)",
    "content": {
        "application/json": {"schema": {"type": "object", "required": ["inputs"]}},
        "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
    },
}


def _describe_upload(
    operation: dict[str, Any], upload: Upload, max_batch_files: int, components: dict[str, Any]
) -> None:
    if upload.open_inference:
        operation["requestBody"] = INFER_BODY
        return
    body = operation["requestBody"]
    body["required"] = True
    form = body["content"]["multipart/form-data"]
    generated = form.get("schema", {}).get("$ref", "")
    components.pop(generated.rsplit("/", 1)[-1], None)  # FastAPI's Body_<name>_<path>_post
    form["schema"] = _form_schema(upload, max_batch_files)


def _describe_parameters(
    operation: dict[str, Any], genres: list[str] | None, served: tuple[str, list[str]] | None
) -> None:
    """`top_k`'s range, and the values `genre`, `version` and the protocol's model `name` take,
    once the models are loaded."""
    for parameter in operation.get("parameters", []):
        name = parameter["name"]
        if name == "top_k":
            parameter["schema"] = _top_k(len(genres) if genres else None)
        elif name == "genre" and genres:
            parameter["schema"] = {"type": "string", "enum": genres}
        elif name == "version" and served:
            parameter["schema"] = {"type": "string", "enum": served[1]}
        elif name == "name" and parameter["in"] == "path" and served:
            parameter["schema"] = {"type": "string", "enum": [served[0]]}


def honest_openapi(app: FastAPI, max_batch_files: int) -> Callable[[], dict[str, Any]]:
    """A replacement for `app.openapi` that patches the generated schema once the model is known."""

    def build() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = FastAPI.openapi(app)
        app.openapi_schema = None  # FastAPI cached the unpatched one; ours replaces it below
        service = getattr(app.state, "service", None)
        genres: list[str] | None = service.default.classifier.genres if service else None
        components = schema.get("components", {}).get("schemas", {})
        for declared in declared_uploads():
            operation = schema["paths"].get(declared.path, {}).get("post")
            if operation is not None:  # declared, and served by this app
                _describe_upload(operation, declared.upload, max_batch_files, components)
        served = (service.name, service.versions) if service else None
        for path_item in schema["paths"].values():
            for operation in path_item.values():
                _describe_parameters(operation, genres, served)
        if genres is not None:  # complete only once the model is loaded
            app.openapi_schema = schema
        return schema

    return build
