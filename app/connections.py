"""Bounds on connections that uvicorn alone leaves open: the mechanism is a wrapped h11 protocol.

uvicorn has no request-read timeout (its keep-alive timer only runs between requests), applies a
header-size limit with its h11 parser only, and answers its own concurrency limit in plain text.
So the service runs uvicorn with h11 (pure Python; the model, not HTTP parsing, is what limits
throughput here) and this subclass of its protocol, which adds:

- a deadline for the request line and headers, counted from their first byte: a client that
  sends headers slowly (slowloris) is answered 408 and disconnected;
- while a body is being received, an idle deadline and a total one: 408 and disconnected;
- a cap on open connections: one over it is answered 503 and closed at once;
- h11's limit on the size of the request line plus headers (431 when over).

Every refusal is the service's JSON error shape, written directly to the socket (there may be no
request yet to answer through h11), followed by `Connection: close`.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, ClassVar

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

_REASONS = {
    408: "Request Timeout",
    431: "Request Header Fields Too Large",
    400: "Bad Request",
    503: "Service Unavailable",
}


HEADERS_MESSAGE = "The request headers took too long to arrive."
BODY_MESSAGE = "The request body stopped arriving or took too long."


def raw_error(status: int, code: str, message: str) -> bytes:
    """A complete HTTP/1.1 response in the JSON error shape, closing the connection."""
    body = json.dumps({"error": {"code": code, "message": message, "request_id": ""}}).encode()
    head = (
        f"HTTP/1.1 {status} {_REASONS[status]}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n"
    )
    if status == 503:
        head += "retry-after: 1\r\n"
    return head.encode() + b"\r\n" + body


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with header and body deadlines and a connection cap."""

    header_timeout_s: ClassVar[float] = 10.0
    body_idle_timeout_s: ClassVar[float] = 30.0
    body_timeout_s: ClassVar[float] = 120.0
    max_connections: ClassVar[int] = 1024
    max_header_bytes: ClassVar[int] = 16 * 1024

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deadline: asyncio.TimerHandle | None = None
        self._phase: str | None = None  # "headers" or "body" while a deadline runs
        self._body_ends_at = 0.0
        self._refused = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]  # as uvicorn's own
        if len(self.connections) >= self.max_connections:
            self._refused = True
            transport.write(
                raw_error(503, "overloaded", "Too many open connections; retry shortly.")
            )
            transport.close()
            return
        super().connection_made(transport)
        self._start_headers()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        if not self._refused:  # a refused connection was never registered
            super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self.conn.their_state is h11.IDLE:
            if self._headers_too_large(data):
                self._refuse(431, "headers_too_large", "The request headers are too large.")
                return
            if self._phase != "headers":  # the first bytes of a request on a kept-alive connection
                self._start_headers()
        super().data_received(data)
        self._follow(data_arrived=True)

    def on_response_complete(self) -> None:
        super().on_response_complete()  # may start parsing a pipelined request
        self._follow(data_arrived=False)

    def _follow(self, *, data_arrived: bool) -> None:
        """Keep the one deadline in step with where the client is in its request."""
        state = self.conn.their_state
        if state is h11.SEND_BODY:
            if self._phase != "body":
                self._phase = "body"
                self._body_ends_at = self.loop.time() + self.body_timeout_s
            if data_arrived or self._deadline is None:
                # Silence counts, and so does the whole body's time: whichever ends first.
                left = self._body_ends_at - self.loop.time()
                self._arm(min(self.body_idle_timeout_s, max(left, 0.0)), BODY_MESSAGE)
        elif state is h11.IDLE:
            buffered, _ = self.conn.trailing_data
            if buffered and self._phase != "headers":
                self._start_headers()  # a pipelined request, partly here
            elif not buffered and not data_arrived:
                self._disarm()  # idle between requests: uvicorn's keep-alive timer applies
        else:
            self._disarm()

    def _start_headers(self) -> None:
        self._arm(self.header_timeout_s, HEADERS_MESSAGE)
        self._phase = "headers"

    def _headers_too_large(self, data: bytes) -> bool:
        """Whether the request line + headers run past the limit, however the bytes were split
        into packets (h11 checks only while an event is incomplete)."""
        buffered, _ = self.conn.trailing_data
        pending = buffered + data
        end = pending.find(b"\r\n\r\n", 0, self.max_header_bytes + 4)
        return end == -1 and len(pending) > self.max_header_bytes

    def send_400_response(self, msg: str) -> None:
        self._refuse(400, "bad_request", "The request is not valid HTTP/1.1.")

    def _refuse(self, status: int, code: str, message: str) -> None:
        self._disarm()
        self.transport.write(raw_error(status, code, message))
        self.transport.close()

    def _arm(self, seconds: float, message: str) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
        self._deadline = self.loop.call_later(seconds, self._expire, message)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        self._phase = None

    def _expire(self, message: str) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        if self.conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):  # no answer begun yet
            self.transport.write(raw_error(408, "request_timeout", message))
        self.transport.close()


def guarded_protocol(
    *,
    header_timeout_s: float,
    body_idle_timeout_s: float,
    body_timeout_s: float,
    max_connections: int,
    max_header_bytes: int,
) -> type[GuardedH11Protocol]:
    """The protocol class uvicorn should use, with these bounds (pass `max_header_bytes` to
    uvicorn's `h11_max_incomplete_event_size` too: h11 enforces it)."""
    return type(
        "ConfiguredGuardedH11Protocol",
        (GuardedH11Protocol,),
        {
            "header_timeout_s": header_timeout_s,
            "body_idle_timeout_s": body_idle_timeout_s,
            "body_timeout_s": body_timeout_s,
            "max_connections": max_connections,
            "max_header_bytes": max_header_bytes,
        },
    )
