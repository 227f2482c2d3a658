"""The uvicorn and starlette internals the service relies on (app/internals.py) are where, and
what, they were when the suite last passed."""

from __future__ import annotations

import dataclasses

import pytest

from app.internals import INTERNALS, Internal, problem


@pytest.mark.parametrize("internal", INTERNALS, ids=lambda i: i.where)
def test_each_internal_is_unchanged(internal: Internal) -> None:
    assert problem(internal) is None


def test_a_moved_signature_is_named() -> None:
    moved = dataclasses.replace(INTERNALS[0], expected="(self)")
    assert problem(moved) is not None
    assert "H11Protocol.__init__: signature moved from (self) to (self, config" in str(
        problem(moved)
    )


def test_a_missing_hook_or_attribute_is_named() -> None:
    gone = Internal("uvicorn.server:Server.no_such_hook", "signature", "(self)", "nobody")
    assert problem(gone) == (
        "uvicorn.server:Server.no_such_hook: gone (type object 'Server' has no attribute "
        "'no_such_hook')"
    )
    unset = Internal("uvicorn.server:Server.no_such_flag", "instance_attribute", "bool", "nobody")
    assert problem(unset) == "uvicorn.server:Server.no_such_flag: no longer set in __init__"
    renamed = dataclasses.replace(INTERNALS[-4], expected="http no_such_parameter")
    assert problem(renamed) == "uvicorn.config:Config.__init__: no parameter no_such_parameter"


def test_every_uvicorn_hook_the_guard_overrides_is_listed() -> None:
    from uvicorn.protocols.http.h11_impl import H11Protocol

    from app.connections import GuardedH11Protocol

    overridden = {
        name
        for name, value in vars(GuardedH11Protocol).items()
        if callable(value) and hasattr(H11Protocol, name) and not name.startswith("__init_sub")
    }
    listed = {i.where.rsplit(".", 1)[1] for i in INTERNALS if "H11Protocol" in i.where}
    assert overridden <= listed, overridden - listed
