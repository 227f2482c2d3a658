"""Every uvicorn and starlette internal the service relies on, in one list.

The connection guards subclass uvicorn's h11 protocol and override eight of its hooks; the server
subclasses uvicorn's `Server`; admission, the body limits and the upload routes match paths with
starlette's own helpers. None of that is public API, so `pyproject.toml` bounds both packages to
the releases the suite passes on, and `tests/test_internals.py` compares each entry here with the
installed packages: a hook whose signature moved, or an attribute that is gone, is named there
before anything misbehaves at run time.
"""

from __future__ import annotations

import importlib
import inspect
from dataclasses import dataclass
from typing import Literal

Check = Literal["signature", "parameters", "instance_attribute", "class_attribute"]


@dataclass(frozen=True)
class Internal:
    """One thing we rely on. `where`: "module:Qualified.name". `check`: what must hold:
    its exact signature (`expected`), that it takes the named keyword `parameters`, or that the
    attribute exists (an instance attribute: assigned in the class's `__init__`)."""

    where: str
    check: Check
    expected: str
    used_by: str


_H11 = "uvicorn.protocols.http.h11_impl:H11Protocol"
INTERNALS: tuple[Internal, ...] = (
    Internal(
        f"{_H11}.__init__",
        "signature",
        "(self, config: 'Config', server_state: 'ServerState', app_state: 'dict[str, Any]', "
        "_loop: 'asyncio.AbstractEventLoop | None' = None) -> 'None'",
        "app.connections",
    ),
    Internal(
        f"{_H11}.connection_made",
        "signature",
        "(self, transport: 'asyncio.Transport') -> 'None'",
        "app.connections",
    ),
    Internal(
        f"{_H11}.connection_lost",
        "signature",
        "(self, exc: 'Exception | None') -> 'None'",
        "app.connections",
    ),
    Internal(f"{_H11}.pause_writing", "signature", "(self) -> 'None'", "app.connections"),
    Internal(f"{_H11}.resume_writing", "signature", "(self) -> 'None'", "app.connections"),
    Internal(
        f"{_H11}.data_received", "signature", "(self, data: 'bytes') -> 'None'", "app.connections"
    ),
    Internal(f"{_H11}.on_response_complete", "signature", "(self) -> 'None'", "app.connections"),
    Internal(
        f"{_H11}.send_400_response", "signature", "(self, msg: 'str') -> 'None'", "app.connections"
    ),
    Internal(f"{_H11}.conn", "instance_attribute", "h11.Connection", "app.connections"),
    Internal(f"{_H11}.transport", "instance_attribute", "asyncio.Transport", "app.connections"),
    Internal(f"{_H11}.loop", "instance_attribute", "asyncio loop", "app.connections"),
    Internal(f"{_H11}.connections", "instance_attribute", "set of protocols", "app.connections"),
    Internal(
        "uvicorn.server:Server.__init__",
        "signature",
        "(self, config: 'Config') -> 'None'",
        "app.server, app.metrics_port",
    ),
    Internal(
        "uvicorn.server:Server.handle_exit",
        "signature",
        "(self, sig: 'int', frame: 'FrameType | None') -> 'None'",
        "app.server",
    ),
    Internal(
        "uvicorn.server:Server.run",
        "signature",
        "(self, sockets: 'list[socket.socket] | None' = None) -> 'None'",
        "app.server, app.metrics_port",
    ),
    Internal("uvicorn.server:Server.started", "instance_attribute", "bool", "app.server"),
    Internal(
        "uvicorn.config:Config.__init__",
        "parameters",
        "http h11_max_incomplete_event_size backlog timeout_graceful_shutdown log_config "
        "access_log lifespan limit_concurrency timeout_keep_alive",
        "app.server, app.metrics_port",
    ),
    Internal(
        "starlette._utils:get_route_path",
        "signature",
        "(scope: 'Scope') -> 'str'",
        "app.admission, app.uploads",
    ),
    Internal(
        "starlette.routing:compile_path",
        "signature",
        "(path: 'str') -> 'tuple[Pattern[str], str, dict[str, Convertor[Any]]]'",
        "app.uploads",
    ),
    Internal(
        "starlette.formparsers:MultiPartParser.spool_max_size",
        "class_attribute",
        "int",
        "app.main",
    ),
)


def _resolve(where: str) -> object:
    module_name, qualified = where.split(":")
    found: object = importlib.import_module(module_name)
    for part in qualified.split("."):
        found = getattr(found, part)
    return found


def problem(internal: Internal) -> str | None:
    """What no longer holds for `internal` in the installed packages, or None."""
    owner, _, name = internal.where.rpartition(".")
    try:
        if internal.check == "instance_attribute":
            source = inspect.getsource(_resolve(f"{owner}.__init__"))  # type: ignore[arg-type]  # a function, found by name
            if f"self.{name} =" not in source and f"self.{name}:" not in source:
                return f"{internal.where}: no longer set in __init__"
            return None
        found = _resolve(internal.where)
    except (AttributeError, ImportError) as exc:
        return f"{internal.where}: gone ({exc})"
    if internal.check == "class_attribute":
        return None
    actual = inspect.signature(found)  # type: ignore[arg-type]  # a callable, found by name
    if internal.check == "parameters":
        missing = [p for p in internal.expected.split() if p not in actual.parameters]
        return f"{internal.where}: no parameter {', '.join(missing)}" if missing else None
    if str(actual) != internal.expected:
        return f"{internal.where}: signature moved from {internal.expected} to {actual}"
    return None
