"""Bounds on connections that uvicorn alone leaves open: the mechanism is a wrapped h11 protocol.

uvicorn has no request-read timeout (its keep-alive timer only runs between requests), applies a
header-size limit with its h11 parser only, and answers its own concurrency limit in plain text.
So the service runs uvicorn with h11 (pure Python; the model, not HTTP parsing, is what limits
throughput here) and this subclass of its protocol, which adds:

- a deadline for the request line and headers, counted from their first byte: a client that
  sends headers slowly (slowloris) is answered 408 and disconnected;
- while a body is being received, an idle deadline and a total one: 408 and disconnected;
- a cap on open connections: one over it is answered 503 and closed;
- a send deadline: a client that reads nothing of its answer for the body idle timeout is cut off;
- h11's limit on the size of the request line plus headers (431 when over);
- a body nobody reads costs nothing: once the answer is sent while the request's body is still
  arriving (a route that never reads it), the connection closes (lingering) instead of parsing the
  rest; and chunked framing has a bounded cost per byte: a body split into more chunks than 16 plus
  one per 256 bytes is refused with 400 before h11 parses those chunks;
- framing that could smuggle a request: Content-Length together with Transfer-Encoding, or a
  folded (obs-fold) header line, is answered 400 and the connection closed, as RFC 9112 §6.3
  and §5.2 allow (h11 would accept both, letting Transfer-Encoding win).

Every refusal is the service's JSON error shape, written directly to the socket (there may be no
request yet to answer through h11), followed by `Connection: close`.

Closing is lingering, as nginx's `lingering_close`: a socket closed while the client's bytes are
still unread makes the kernel send a reset, which can destroy the answer on its way (a 431 or a
413 sent while the client is still uploading). So every close the service makes (its own refusals
and uvicorn's after `Connection: close`) sends FIN after the answer, reads and drops whatever the
client still sends, and closes when the client does or after `LINGER_S`. That includes the idle
kept-alive connections uvicorn closes at shutdown: a request that crosses their FIN is dropped,
and its client sees the connection end (which HTTP clients retry on) rather than a reset.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable, Iterable
from typing import Any, ClassVar

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

_REASONS = {
    408: "Request Timeout",
    431: "Request Header Fields Too Large",
    400: "Bad Request",
    503: "Service Unavailable",
}


LINGER_S = 2.0
# Between two reads of a lingering socket: at most one read per interval, so a client that floods
# after being refused costs the event loop ~100 small callbacks a second, not one per 256 KiB it
# manages to push over loopback (which made /health 10x slower under a 16-client flood).
DRAIN_INTERVAL_S = 0.01

HEADERS_MESSAGE = "The request headers took too long to arrive."
BODY_MESSAGE = "The request body stopped arriving or took too long."


FRAMING_MESSAGE = "The request's framing is ambiguous: Content-Length with Transfer-Encoding."
FOLDED_MESSAGE = "A header line is folded (obs-fold), which HTTP no longer allows."
_HEADER_END = re.compile(rb"\r?\n\r?\n")
_LINE_END = re.compile(rb"\r?\n")


def framing_problem(pending: bytes) -> str | None:
    """Why the request whose head starts `pending` must be refused, once that head is complete:
    a folded header line, or Content-Length together with Transfer-Encoding. None otherwise (or
    while the head is still incomplete)."""
    end = _HEADER_END.search(pending)
    if end is None:
        return None
    lines = _LINE_END.split(pending[: end.start()])[1:]  # after the request line
    if any(line[:1] in (b" ", b"\t") for line in lines):
        return FOLDED_MESSAGE
    names = {line.split(b":", 1)[0].strip().lower() for line in lines}
    if b"content-length" in names and b"transfer-encoding" in names:
        return FRAMING_MESSAGE
    return None


CHUNKS_MESSAGE = "The request body is split into too many chunks for its size."
# Chunks allowed: 16, plus one per this many body bytes (real clients send KiB-sized chunks).
BYTES_PER_CHUNK = 256
_CHUNKED = re.compile(rb"^transfer-encoding:[^\r\n]*chunked", re.IGNORECASE | re.MULTILINE)


class ChunkCount:
    """Counts the chunks of a chunked body as its bytes arrive, jumping over each chunk's data:
    a few Python steps per chunk, where h11 spends tens of microseconds per chunk."""

    def __init__(self) -> None:
        self.chunks = 0
        self.bytes = 0
        self._line = b""
        self._remaining = 0  # bytes of chunk data (and its CRLF) still to skip
        self._done = False
        self._refused = False

    @property
    def pathological(self) -> bool:
        """More chunks than the bytes so far allow: refuse the request."""
        return self._refused

    def _over(self, consumed: int) -> bool:
        self._refused = self._refused or self.chunks > 16 + consumed // BYTES_PER_CHUNK
        return self._refused

    def feed(self, data: bytes) -> None:
        base = self.bytes
        self.bytes += len(data)
        position = 0
        while not self._done and position < len(data):
            if self._over(base + position):
                return  # counting stops here: the cost of a refusal is bounded too
            if self._remaining:
                taken = min(self._remaining, len(data) - position)
                self._remaining -= taken
                position += taken
                continue
            end = data.find(b"\n", position)
            if end == -1:
                self._line = (self._line + data[position:])[-1024:]
                break
            line, self._line = self._line + data[position:end], b""
            position = end + 1
            digits = line.split(b";", 1)[0].strip()
            try:
                size = int(digits, 16)
            except ValueError:
                self._done = True  # malformed: h11 answers it
                return
            if size == 0:
                self._done = True  # the last chunk; trailers follow
                return
            self.chunks += 1
            self._remaining = size + 2
        self._over(self.bytes)


def chunk_count_after_head(pending: bytes) -> ChunkCount | None:
    """A ChunkCount fed with the body bytes after a complete, chunked request head; None for a
    head that is incomplete or not chunked."""
    end = _HEADER_END.search(pending)
    if end is None or not _CHUNKED.search(pending[: end.start()]):
        return None
    count = ChunkCount()
    count.feed(pending[end.end() :])
    return count


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


class _LingeringTransport(asyncio.Transport):
    """The transport uvicorn and the app are given: the same socket, but `close()` lingers."""

    def __init__(self, transport: asyncio.Transport, linger: Callable[[], None]) -> None:
        super().__init__()
        self._transport = transport
        self._linger = linger
        self._closed = False

    def close(self) -> None:
        self._closed = True
        self._linger()

    def is_closing(self) -> bool:
        return self._closed or self._transport.is_closing()

    def abort(self) -> None:
        self._transport.abort()

    # Once closed, writes are dropped, as a closed asyncio transport drops them (a write after the
    # half-close would raise instead: an app woken just before a deadline closed its connection).
    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not self._closed:
            self._transport.write(data)

    def writelines(self, list_of_data: Iterable[bytes | bytearray | memoryview]) -> None:
        if not self._closed:
            self._transport.writelines(list_of_data)

    def can_write_eof(self) -> bool:
        return self._transport.can_write_eof()

    def write_eof(self) -> None:
        self._transport.write_eof()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._transport.get_extra_info(name, default)

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._transport.get_protocol()

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._transport.set_protocol(protocol)

    def is_reading(self) -> bool:
        return self._transport.is_reading()

    def pause_reading(self) -> None:
        if not self._closed:  # a lingering socket is drained to the end
            self._transport.pause_reading()

    def resume_reading(self) -> None:
        self._transport.resume_reading()

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size()

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return self._transport.get_write_buffer_limits()

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self._transport.set_write_buffer_limits(high, low)


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with header, body and send deadlines, a connection cap and
    lingering close."""

    header_timeout_s: ClassVar[float] = 10.0
    body_idle_timeout_s: ClassVar[float] = 30.0
    body_timeout_s: ClassVar[float] = 120.0
    max_connections: ClassVar[int] = 1024
    max_header_bytes: ClassVar[int] = 16 * 1024
    # Connections refused over the cap are not in `connections`: their lingering has its own
    # small budget (an eighth of the cap), beyond which they are closed at once, so they cannot
    # hold file descriptors outside the cap.
    lingering_refusals: ClassVar[int] = 0

    @staticmethod
    def on_refusal(code: str) -> None:
        """Told the error code of every refusal made here, before any route (for the metrics)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deadline: asyncio.TimerHandle | None = None
        self._phase: str | None = None  # "headers" or "body" while a deadline runs
        self._body_ends_at = 0.0
        self._refused = False
        self._socket: asyncio.Transport | None = None
        self._lingering = False
        self._linger_ends: asyncio.TimerHandle | None = None
        self._send_stalled: asyncio.TimerHandle | None = None
        self._counted_refusal = False
        self._chunks: ChunkCount | None = None  # the current request's, when it is chunked

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]  # as uvicorn's own
        self._socket = transport
        if len(self.connections) >= self.max_connections:
            self._refused = True
            self.on_refusal("overloaded")
            transport.write(
                raw_error(503, "overloaded", "Too many open connections; retry shortly.")
            )
            if type(self).lingering_refusals < max(1, self.max_connections // 8):
                type(self).lingering_refusals += 1
                self._counted_refusal = True
                self._close_lingering()
            else:
                self._lingering = True  # whatever still arrives is dropped
                transport.close()
            return
        super().connection_made(_LingeringTransport(transport, self._close_lingering))
        self._start_headers()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        for timer in (self._linger_ends, self._send_stalled):
            if timer is not None:
                timer.cancel()
        if self._refused:  # a refused connection was never registered
            if self._counted_refusal:
                type(self).lingering_refusals -= 1
        else:
            super().connection_lost(exc)

    def pause_writing(self) -> None:
        # A client that reads nothing of its answer for the body's idle timeout is cut off: it
        # would otherwise hold its connection and the answer's bytes for ever.
        if self._send_stalled is None and self._socket is not None:
            self._send_stalled = self.loop.call_later(self.body_idle_timeout_s, self._socket.abort)
        if not self._refused:
            super().pause_writing()

    def resume_writing(self) -> None:
        if self._send_stalled is not None:
            self._send_stalled.cancel()
            self._send_stalled = None
        if not self._refused:
            super().resume_writing()

    def _close_lingering(self) -> None:
        """Send FIN after what was written, drop what the client still sends, close when it
        closes (asyncio closes the socket once `eof_received` returns) or after `LINGER_S`."""
        socket = self._socket
        if socket is None or self._lingering or socket.is_closing():
            return
        self._lingering = True
        self._disarm()
        if not socket.can_write_eof():
            socket.close()
            return
        socket.write_eof()
        socket.resume_reading()
        self._linger_ends = self.loop.call_later(LINGER_S, self._end_linger)

    def _end_linger(self) -> None:
        socket = self._socket
        if socket is None:
            return
        socket.close()  # waits for the answer to be sent
        if socket.get_write_buffer_size():  # still unread: the body's idle patience, no more
            self._linger_ends = self.loop.call_later(self.body_idle_timeout_s, socket.abort)

    def data_received(self, data: bytes) -> None:
        if self._lingering:
            self._drain_later()
            return
        if self.conn.their_state is h11.IDLE:
            if self._headers_too_large(data):
                self._refuse(431, "headers_too_large", "The request headers are too large.")
                return
            pending = self.conn.trailing_data[0] + data
            problem = framing_problem(pending)
            if problem is not None:  # before h11 reads it: nothing of it reaches the app
                self._refuse(400, "bad_request", problem)
                return
            self._chunks = chunk_count_after_head(pending)
            if self._phase != "headers":  # the first bytes of a request on a kept-alive connection
                self._start_headers()
        elif self.conn.their_state is h11.SEND_BODY and self._chunks is not None:
            self._chunks.feed(data)
        if self._chunks is not None and self._chunks.pathological:
            self._refuse(400, "bad_request", CHUNKS_MESSAGE)
            return
        super().data_received(data)
        self._follow(data_arrived=True)

    def on_response_complete(self) -> None:
        if not self.transport.is_closing() and self.conn.their_state is h11.SEND_BODY:
            # Answered before its body was read: what is still coming is dropped, not parsed.
            self.transport.close()
        if not self.transport.is_closing() and self.conn.their_state is h11.DONE:
            # A pipelined request already buffered: checked before the next cycle parses it.
            problem = framing_problem(self.conn.trailing_data[0])
            if problem is not None:
                self._refuse(400, "bad_request", problem)
                return
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

    def _drain_later(self) -> None:
        socket = self._socket
        if socket is None or socket.is_closing():
            return
        socket.pause_reading()
        self.loop.call_later(DRAIN_INTERVAL_S, self._drain_again)

    def _drain_again(self) -> None:
        if self._socket is not None and not self._socket.is_closing():
            self._socket.resume_reading()

    def send_400_response(self, msg: str) -> None:
        self._refuse(400, "bad_request", "The request is not valid HTTP/1.1.")

    def _refuse(self, status: int, code: str, message: str) -> None:
        self.on_refusal(code)
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
            self.on_refusal("request_timeout")
            self.transport.write(raw_error(408, "request_timeout", message))
        self.transport.close()


def guarded_protocol(
    *,
    header_timeout_s: float,
    body_idle_timeout_s: float,
    body_timeout_s: float,
    max_connections: int,
    max_header_bytes: int,
    on_refusal: Callable[[str], None],
) -> type[GuardedH11Protocol]:
    """The protocol class uvicorn should use, with these bounds (pass `max_header_bytes` to
    uvicorn's `h11_max_incomplete_event_size` too: h11 enforces it), telling `on_refusal` the
    code of each refusal it makes."""
    return type(
        "ConfiguredGuardedH11Protocol",
        (GuardedH11Protocol,),
        {
            "header_timeout_s": header_timeout_s,
            "body_idle_timeout_s": body_idle_timeout_s,
            "body_timeout_s": body_timeout_s,
            "max_connections": max_connections,
            "max_header_bytes": max_header_bytes,
            "on_refusal": staticmethod(on_refusal),
        },
    )
