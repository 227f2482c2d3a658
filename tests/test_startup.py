"""Every start-up failure of `python -m app` is one or two plain lines and a non-zero exit."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from devkit.ports import free_port
from tests.cli_process import run_without_tensorflow

PROJECT = Path(__file__).resolve().parents[1]


def start(env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app"],
        cwd=PROJECT,
        env={**os.environ, "POSTER_HOST": "127.0.0.1", **env},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def assert_plain(result: subprocess.CompletedProcess[str], code: int, *phrases: str) -> None:
    lines = result.stderr.strip().splitlines()
    assert result.returncode == code, result.stderr
    assert 1 <= len(lines) <= 2, result.stderr
    assert "Traceback" not in result.stderr
    for phrase in phrases:
        assert phrase in result.stderr


@pytest.mark.parametrize(
    ("env", "phrases"),
    [
        ({"POSTER_PORT": "abc"}, ["cannot start: POSTER_PORT='abc'", "valid integer"]),
        ({"POSTER_CORS_ORIGINS": "*"}, ["POSTER_CORS_ORIGINS must list origins explicitly"]),
        ({"POSTER_CORS_ORIGINS": '["*"]'}, ["POSTER_CORS_ORIGINS must list origins explicitly"]),
        ({"POSTER_MAX_QUEUE": "0"}, ["POSTER_MAX_QUEUE='0'", "greater than or equal to 1"]),
        ({"POSTER_LOG_LEVEL": "LOUD"}, ["POSTER_LOG_LEVEL='LOUD'"]),
        ({"POSTER_API_KEY": ""}, ["POSTER_API_KEY must be at least 16 characters (got 0)"]),
        ({"POSTER_API_KEY": "   "}, ["POSTER_API_KEY must be at least 16 characters (got 0)"]),
        ({"POSTER_API_KEY": "short-key"}, ["at least 16 characters (got 9)"]),
        (
            {"POSTER_MAX_INFLIGHT_BODY_MB": "100"},
            [
                "POSTER_MAX_INFLIGHT_BODY_MB (100) must hold one largest upload charged three "
                "times: at least 192"
            ],
        ),
        (
            {"POSTER_PORT": "8000", "POSTER_METRICS_PORT": "8000"},
            ["POSTER_METRICS_PORT must differ from POSTER_PORT (8000)"],
        ),
    ],
)
def test_a_bad_setting_is_one_line_naming_the_variable(
    env: dict[str, str], phrases: list[str]
) -> None:
    assert_plain(start(env), 2, *phrases)


def test_comma_separated_cors_origins_are_accepted() -> None:
    from app.config import Settings

    os.environ["POSTER_CORS_ORIGINS"] = "https://a.example, https://b.example"
    try:
        assert Settings().cors_origins == ["https://a.example", "https://b.example"]
    finally:
        del os.environ["POSTER_CORS_ORIGINS"]


def test_an_unknown_version_is_reported_before_tensorflow_loads(tiny_store: Path) -> None:
    env = {
        "POSTER_MODEL_STORE": str(tiny_store),
        "POSTER_MODEL_VERSION": "nope",
        "POSTER_HOST": "127.0.0.1",
        "POSTER_PORT": str(free_port()),
    }
    result = run_without_tensorflow("app.__main__:main", [], env)
    assert_plain(result, 1, "cannot serve: model version 'nope' not found", "(available: tiny)")


def test_help_prints_the_settings_and_starts_nothing() -> None:
    result = run_without_tensorflow("app.__main__:main", ["--help"])
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: python -m app")
    assert "POSTER_API_KEY" in result.stdout and "POSTER_MODEL_VERSION" in result.stdout
    assert run_without_tensorflow("app.__main__:main", ["--port", "1"]).returncode == 2


def test_a_lower_case_log_level_is_accepted() -> None:
    from app.config import Settings

    assert Settings(log_level="info").log_level == "INFO"


@pytest.mark.slow
def test_a_corrupt_model_is_one_line(broken_store: Path) -> None:
    (broken_store / "poster-genres" / "tiny" / "model.keras").write_bytes(b"garbage")
    result = start({"POSTER_MODEL_STORE": str(broken_store), "POSTER_PORT": str(free_port())})
    assert_plain(result, 1, "cannot serve:", "model.keras: SHA-256")


def test_a_port_in_use_is_one_line() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = start({"POSTER_PORT": str(port)}, timeout=60)
    assert_plain(result, 1, f"cannot start: 127.0.0.1:{port} cannot be used", "POSTER_PORT")


def test_uvicorn_app_main_app_is_refused_with_one_line_naming_python_m_app(
    tiny_store: Path,
) -> None:
    """Plain uvicorn would serve without the guards `python -m app` installs: it must not start."""
    result = subprocess.run(
        [sys.executable, "-m", "uvicorn", "app.main:app", "--port", str(free_port())],
        cwd=PROJECT,
        env={**os.environ, "POSTER_MODEL_STORE": str(tiny_store)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert_plain(result, 1, "start it with `python -m app`")
