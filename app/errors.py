"""Domain errors: each carries the HTTP status and the stable machine-readable code clients see.

Plain Python (no FastAPI) so the preprocessing and the training package can raise them too.
"""

from __future__ import annotations

from typing import ClassVar


class ServiceError(Exception):
    """Base of every error the service answers with its one JSON error shape."""

    status_code: int = 500
    code: str = "internal_error"
    default_headers: ClassVar[dict[str, str] | None] = None

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
        self.headers: dict[str, str] | None = self.default_headers


class EmptyFile(ServiceError):
    status_code = 400
    code = "empty_file"


class InvalidImage(ServiceError):
    status_code = 400
    code = "invalid_image"


class UnsupportedFormat(ServiceError):
    status_code = 415
    code = "unsupported_format"


class ImageTooLarge(ServiceError):
    status_code = 422
    code = "image_too_large"


class MissingFile(ServiceError):
    status_code = 422
    code = "missing_file"


class TooManyFiles(ServiceError):
    status_code = 422
    code = "too_many_files"


class InvalidParameter(ServiceError):
    status_code = 422
    code = "invalid_parameter"


class PayloadTooLarge(ServiceError):
    status_code = 413
    code = "payload_too_large"


class Unauthorized(ServiceError):
    status_code = 401
    code = "unauthorized"
    default_headers: ClassVar[dict[str, str] | None] = {"WWW-Authenticate": "Bearer"}


class ServiceUnavailable(ServiceError):
    """503s carry Retry-After so well-behaved clients back off instead of hammering."""

    status_code = 503
    code = "unavailable"

    def __init__(self, message: str, retry_after_s: int = 1) -> None:
        super().__init__(message)
        self.headers = {"Retry-After": str(retry_after_s)}


class Overloaded(ServiceUnavailable):
    code = "overloaded"


class DeadlineExceeded(ServiceUnavailable):
    code = "deadline_exceeded"


class NotReady(ServiceUnavailable):
    code = "not_ready"


class ClientDisconnected(ServiceError):
    """Nobody is listening any more; the status is only for the access log (nginx's 499)."""

    status_code = 499
    code = "client_disconnected"


class InferenceFailed(ServiceError):
    status_code = 500
    code = "inference_failed"


# Decoding is allowed to fail only with these: the fuzz tests pin it.
DECODE_ERRORS: tuple[type[ServiceError], ...] = (
    EmptyFile,
    InvalidImage,
    UnsupportedFormat,
    ImageTooLarge,
)
