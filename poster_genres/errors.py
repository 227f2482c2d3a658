"""Errors of the contract: what can go wrong turning bytes into an input or loading a model version.

Plain exceptions with a stable machine-readable `code` and a message for people; no HTTP notion.
The service maps each class to a status in one table (`app/error_handlers.py`).
"""

from __future__ import annotations


class PosterGenresError(Exception):
    """Base of every error with a stable code, raised by the core and by the service."""

    code: str = "internal_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class EmptyFile(PosterGenresError):
    code = "empty_file"


class InvalidImage(PosterGenresError):
    code = "invalid_image"


class UnsupportedFormat(PosterGenresError):
    code = "unsupported_format"


class ImageTooLarge(PosterGenresError):
    code = "image_too_large"


class ModelStoreError(PosterGenresError):
    """The configured model version cannot be served; the message says which file and why."""

    code = "model_unavailable"


# Decoding is allowed to fail only with these: the fuzz tests pin it.
DECODE_ERRORS: tuple[type[PosterGenresError], ...] = (
    EmptyFile,
    InvalidImage,
    UnsupportedFormat,
    ImageTooLarge,
)
