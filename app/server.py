"""The server behind `python -m app`: uvicorn with the connection guards, using the POSTER_* settings.

Start-up checks come first and each failure is one line on stderr and a non-zero exit: settings
(exit 2), the port (exit 1), the model version (exit 1). TensorFlow's start-up banner is held back
unless POSTER_LOG_LEVEL=DEBUG.

SIGTERM/SIGINT: readiness turns 503 `draining` at once and the predict routes refuse new work with
503; the listener stays open POSTER_DRAIN_DELAY_S so load balancers notice, then uvicorn stops
accepting connections (new ones are refused), lets in-flight requests finish for up to
POSTER_SHUTDOWN_GRACE_S, and the process exits.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import math
import signal
import socket
import sys
import threading
from collections.abc import Sequence
from types import FrameType

import uvicorn
from fastapi import APIRouter, FastAPI
from pydantic import ValidationError
from pydantic_settings import SettingsError

from app.config import Settings, describe_settings_error, get_settings

logger = logging.getLogger("app")


class DrainingServer(uvicorn.Server):
    """On a shutdown signal: readiness turns 503 at once, the listener stays open for
    `drain_delay_s` so load balancers see it and stop sending, then uvicorn shuts down gracefully.
    A second signal during the delay shuts down at once."""

    def __init__(self, config: uvicorn.Config, app: FastAPI, drain_delay_s: float) -> None:
        super().__init__(config)
        self.app = app
        self.drain_delay_s = drain_delay_s
        self._pending: threading.Timer | None = None

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self.app.state.service is not None:
            self.app.state.service.gate.drain()
        if self.drain_delay_s <= 0 or self._pending is not None:
            if self._pending is not None:
                self._pending.cancel()
                logger.warning("second signal: stopping now")
            super().handle_exit(sig, frame)
            return
        # Otherwise the process sits silent for the delay, and looks hung to whoever pressed Ctrl+C.
        logger.warning(
            "shutting down: readiness is 503 now; new connections are accepted for %.1f s "
            "(POSTER_DRAIN_DELAY_S) so load balancers notice, then in-flight requests finish; "
            "signal again to stop now",
            self.drain_delay_s,
        )
        self._pending = threading.Timer(self.drain_delay_s, super().handle_exit, (sig, frame))
        self._pending.daemon = True
        self._pending.start()


def exit_on_sigterm(signum: int, frame: FrameType | None) -> None:
    """SIGTERM as an orderly exit (status 143) rather than death by the signal, so that what is
    still queued for the log is written. uvicorn saves this handler while it serves and calls it
    again once its graceful shutdown is done."""
    raise SystemExit(128 + signum)


def port_in_use(host: str, port: int) -> str | None:
    """Why `host:port` cannot be bound, or None when it can (checked before the model loads)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            return exc.strerror or str(exc)
    return None


def _parser() -> argparse.ArgumentParser:
    fields = "\n".join(
        f"  POSTER_{name.upper():<28} {field.description or ''}"
        for name, field in Settings.model_fields.items()
    )
    return argparse.ArgumentParser(
        prog="python -m app",
        description="Serve poster-genres over HTTP (default http://0.0.0.0:8000). It takes no "
        "arguments: every setting is an environment variable (README: Configuration).",
        epilog=f"settings:\n{fields}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def main(argv: list[str] | None = None, routers: Sequence[APIRouter] = ()) -> int:
    """Check the settings and the ports, then serve; `routers`: more routes for the app."""
    _parser().parse_args(argv)
    signal.signal(signal.SIGTERM, exit_on_sigterm)
    try:
        settings = get_settings()
    except (ValidationError, SettingsError) as exc:
        print(f"cannot start: {describe_settings_error(exc)}", file=sys.stderr)
        return 2
    ports = {"POSTER_PORT": settings.port, "POSTER_METRICS_PORT": settings.metrics_port}
    for variable, port in ports.items():
        problem = port_in_use(settings.host, port) if port is not None else None
        if problem:
            print(
                f"cannot start: {settings.host}:{port} cannot be used ({problem}); "
                f"set {variable} to a free port",
                file=sys.stderr,
            )
            return 1
    return serve(settings, routers)


def serve(settings: Settings, routers: Sequence[APIRouter] = ()) -> int:
    """Load the models (or fail in one line), then run uvicorn until a shutdown signal."""
    from app.logs import configure_logging
    from app.main import create_app, load_classifier, served_versions
    from poster_genres.cli import import_tensorflow
    from poster_genres.errors import ModelStoreError
    from poster_genres.runtimes import resolve_runtime
    from poster_genres.runtimes.threads import process_budget

    configure_logging(settings.log_level)  # the process's one logging set-up
    try:  # a mistyped version, or a runtime it cannot have, is reported before any model loads
        versions = served_versions(settings)
        runtimes = [resolve_runtime(settings.runtime, version) for version in versions]
    except ModelStoreError as exc:
        print(f"cannot serve: {exc}", file=sys.stderr)
        return 1
    for version, runtime in zip(versions, runtimes, strict=True):
        logger.info("starting: loading %s/%s under %s", version.name, version.version, runtime)
    if "keras" in runtimes:  # LiteRT needs no TensorFlow in the process at all
        budget = process_budget(settings.threads)
        import_tensorflow(verbose=settings.log_level == "DEBUG", threads=budget.size)
    from app.connections import guarded_protocol

    try:  # each verified once, above
        classifiers = [load_classifier(settings, version) for version in versions]
    except ModelStoreError as exc:
        print(f"cannot serve: {exc}", file=sys.stderr)
        return 1
    app = create_app(settings, classifiers, routers)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        http=guarded_protocol(
            header_timeout_s=settings.header_timeout_s,
            body_idle_timeout_s=settings.body_idle_timeout_s,
            body_timeout_s=settings.body_timeout_s,
            max_connections=settings.max_connections,
            max_header_bytes=settings.max_header_bytes,
            on_refusal=app.state.metrics.observe_connection_refusal,
        ),
        h11_max_incomplete_event_size=settings.max_header_bytes,
        backlog=settings.max_connections,
        timeout_graceful_shutdown=math.ceil(settings.shutdown_grace_s),
        log_level=settings.log_level.lower(),
        log_config=None,  # uvicorn's records go through the service's non-blocking handler
        access_log=False,  # our middleware logs one structured line per request
    )
    server = DrainingServer(config, app, settings.drain_delay_s)
    if settings.metrics_port is not None:
        from app.metrics_port import MetricsServer

        registry = app.state.metrics.registry
        MetricsServer(registry, settings.host, settings.metrics_port, settings.log_level).start()
    # uvicorn re-raises Ctrl+C after its graceful shutdown; its own `uvicorn.run` ignores it too.
    with contextlib.suppress(KeyboardInterrupt):
        server.run()
    return 0 if server.started else 1
