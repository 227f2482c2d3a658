"""`/metrics` on a port of its own (POSTER_METRICS_PORT), as Triton serves its metrics.

The scraper reaches it without the API key, and the public port no longer has `/metrics` at all,
so the port can be kept off the Ingress and the proxy. It runs in a thread with its own event
loop: rendering the exposition (about 10 ms of CPU) never holds up the requests on the main loop.
"""

from __future__ import annotations

import json
import threading

import uvicorn
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from starlette.types import Receive, Scope, Send


def metrics_asgi(registry: CollectorRegistry) -> object:
    """An ASGI app answering `GET /metrics` with the registry, and a JSON 404 or 405 otherwise."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        status, kind, body = 200, CONTENT_TYPE_LATEST, b""
        if scope["path"] != "/metrics":
            status, kind = 404, "application/json"
            body = _error("not_found", "Only /metrics is served on this port.")
        elif scope["method"] not in ("GET", "HEAD"):
            status, kind = 405, "application/json"
            body = _error("method_not_allowed", "Use GET.")
        else:
            body = generate_latest(registry)
        headers = [(b"content-type", kind.encode()), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send(
            {"type": "http.response.body", "body": body if scope["method"] != "HEAD" else b""}
        )

    return app


def _error(code: str, message: str) -> bytes:
    return json.dumps({"error": {"code": code, "message": message, "request_id": ""}}).encode()


class MetricsServer:
    """A small uvicorn server for `/metrics`, in a daemon thread beside the main server."""

    def __init__(self, registry: CollectorRegistry, host: str, port: int, log_level: str) -> None:
        config = uvicorn.Config(
            metrics_asgi(registry),  # type: ignore[arg-type]  # a plain ASGI 3 callable
            host=host,
            port=port,
            log_level=log_level.lower(),
            log_config=None,
            access_log=False,
            lifespan="off",
            limit_concurrency=32,  # a scraper needs one or two; the rest is someone else
            timeout_keep_alive=30,
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="metrics-port", daemon=True)

    def start(self) -> None:
        """Serve until the process exits (through the drain too, so the scraper sees it)."""
        self.thread.start()
