"""`python -m app`: run the service with uvicorn, using the POSTER_* settings.

SIGTERM/SIGINT: readiness turns 503 `draining` at once and the predict routes refuse new work with
503 `draining`; uvicorn stops accepting connections (new ones are refused), lets in-flight requests
finish for up to POSTER_SHUTDOWN_GRACE_S, then the process exits.
"""

from __future__ import annotations

import sys
from types import FrameType

import uvicorn
from fastapi import FastAPI

from app.config import get_settings
from app.main import create_app


class DrainingServer(uvicorn.Server):
    """Marks the service draining the moment a shutdown signal arrives."""

    def __init__(self, config: uvicorn.Config, app: FastAPI) -> None:
        super().__init__(config)
        self.app = app

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self.app.state.service is not None:
            self.app.state.service.drain()
        super().handle_exit(sig, frame)


def main() -> int:
    settings = get_settings()
    app = create_app(settings)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        timeout_graceful_shutdown=int(settings.shutdown_grace_s),
        log_level=settings.log_level.lower(),
        access_log=False,  # our middleware logs one structured line per request
    )
    server = DrainingServer(config, app)
    server.run()
    return 0 if server.started else 1


if __name__ == "__main__":
    sys.exit(main())
