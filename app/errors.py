"""Errors only the service raises (authentication, admission, deadlines). Like the core's, they
carry a code and a message; their HTTP status comes from the one table in `app/error_handlers.py`."""

from __future__ import annotations

from poster_genres.errors import PosterGenresError


class MissingFile(PosterGenresError):
    code = "missing_file"


class UnsupportedMediaType(PosterGenresError):
    """The body is declared as something that is neither a form nor an image (a PDF, JSON...)."""

    code = "unsupported_media_type"


class PayloadTooLarge(PosterGenresError):
    code = "payload_too_large"


class TooManyFiles(PosterGenresError):
    code = "too_many_files"


class InvalidParameter(PosterGenresError):
    code = "invalid_parameter"


class Unauthorized(PosterGenresError):
    code = "unauthorized"


class ServiceUnavailable(PosterGenresError):
    """Answered 503 with Retry-After, so well-behaved clients back off instead of hammering."""

    code = "unavailable"

    def __init__(self, message: str, retry_after_s: int = 1) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class Overloaded(ServiceUnavailable):
    code = "overloaded"


class DeadlineExceeded(ServiceUnavailable):
    code = "deadline_exceeded"


class NotReady(ServiceUnavailable):
    code = "not_ready"


class ClientDisconnected(PosterGenresError):
    """Nobody is listening any more; the status is only for the access log (nginx's 499)."""

    code = "client_disconnected"


class NotSupported(PosterGenresError):
    """The served model cannot do this (e.g. explanations for a head without a feature map)."""

    code = "not_supported"


class InferenceFailed(PosterGenresError):
    code = "inference_failed"


class UnknownVersion(PosterGenresError):
    """A model version (or model name) this process does not serve."""

    code = "unknown_version"


class Forbidden(PosterGenresError):
    """A call this configuration does not allow at all (admin calls without POSTER_ADMIN_KEY)."""

    code = "forbidden"
