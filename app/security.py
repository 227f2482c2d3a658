"""Security headers on every answer, with a Content-Security-Policy fitted to each kind of route.

- The page (`/`): only its own scripts, styles and images (plus the uploaded poster's blob: URL).
- API docs (`/docs`, `/redoc`): their inline bootstrap scripts are allowed by SHA-256 hash, computed
  from the very HTML being sent, never by 'unsafe-inline'; their widgets need inline styles,
  data: icons and (ReDoc) a blob: worker.
- Everything else (JSON, static files): nothing may run or embed it.
"""

from __future__ import annotations

import base64
import hashlib
import re

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

COMMON = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}
PAGE_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
    "connect-src 'self'; form-action 'none'; base-uri 'none'; frame-ancestors 'none'"
)
API_POLICY = "default-src 'none'; frame-ancestors 'none'"
DOCS_PAGES = ("/docs", "/redoc")
_INLINE_SCRIPT = re.compile(rb"<script>(.*?)</script>", re.DOTALL)


def docs_policy(html: bytes) -> str:
    """The docs pages' policy: their own assets, and exactly the inline scripts in `html`."""
    hashes = " ".join(
        "'sha256-" + base64.b64encode(hashlib.sha256(script).digest()).decode() + "'"
        for script in _INLINE_SCRIPT.findall(html)
    )
    return (
        f"default-src 'none'; script-src 'self' {hashes}; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data:; connect-src 'self'; worker-src blob:; font-src 'self' data:; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )


class SecurityHeadersMiddleware:
    """Adds COMMON headers and the route's Content-Security-Policy to every HTTP response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        if path in DOCS_PAGES:
            await self._docs(scope, receive, send)
            return
        policy = PAGE_POLICY if path == "/" else API_POLICY

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers.update(COMMON)
                headers["Content-Security-Policy"] = policy
            await send(message)

        await self.app(scope, receive, with_headers)

    async def _docs(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Hold the (small) docs page until its body is complete, to hash its inline scripts."""
        start: Message | None = None
        body = b""

        async def held(message: Message) -> None:
            nonlocal start, body
            if message["type"] == "http.response.start":
                start = message
                return
            body += message.get("body", b"")
            if message.get("more_body", False) or start is None:
                return
            headers = MutableHeaders(scope=start)
            headers.update(COMMON)
            headers["Content-Security-Policy"] = docs_policy(body)
            await send(start)
            await send({"type": "http.response.body", "body": body})

        await self.app(scope, receive, held)
