"""Schemathesis hooks: a schema-valid poster is a real image, so file fields and raw bodies get real
JPEG, PNG, WebP and GIF files (SCHEMATHESIS_HOOKS=tests.schemathesis_hooks)."""

from __future__ import annotations

import io

import schemathesis
from hypothesis import strategies as st
from PIL import Image


def _image(colour: tuple[int, int, int], size: tuple[int, int], fmt: str) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format=fmt)
    return buffer.getvalue()


POSTERS = st.builds(
    _image,
    st.tuples(st.integers(0, 255), st.integers(0, 255), st.integers(0, 255)),
    st.tuples(st.integers(1, 64), st.integers(1, 64)),
    st.sampled_from(["JPEG", "PNG", "WEBP", "GIF"]),
)

# Multipart file parts (format: binary) and raw bodies (their media types).
schemathesis.openapi.format("binary", POSTERS)
schemathesis.openapi.media_type(
    "application/octet-stream",
    POSTERS,
    aliases=["image/jpeg", "image/png", "image/webp", "image/gif"],
)
