"""What can be checked of the deployment without a Docker engine, plus the linters."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from devkit.ports import free_port
from tests.conftest import IN_CI

PROJECT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def tool(name: str) -> str:
    path = shutil.which(name, path=str(BIN)) or shutil.which(name)
    if path is None:
        if IN_CI:
            pytest.fail(f"{name} is not installed (required when CI=true)")
        pytest.skip(f"{name} is not installed")
    return path


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=PROJECT, capture_output=True, text=True, timeout=300)


def test_dockerfile_passes_hadolint() -> None:
    result = run(tool("hadolint"), "Dockerfile")
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_file_follows_the_compose_spec() -> None:
    result = run(
        tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", "docker-compose.yml"
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_grace_outlasts_the_service_grace() -> None:
    compose = (PROJECT / "docker-compose.yml").read_text()
    stop = int(re.search(r"stop_grace_period: (\d+)s", compose).group(1))  # type: ignore[union-attr]  # absent: the test fails anyway
    service = float(re.search(r'POSTER_SHUTDOWN_GRACE_S: "(\d+)"', compose).group(1))  # type: ignore[union-attr]  # as above
    delay = float(re.search(r'POSTER_DRAIN_DELAY_S: "(\d+)"', compose).group(1))  # type: ignore[union-attr]  # as above
    assert stop > delay + service


def test_ruff_lint_and_format_are_clean() -> None:
    ruff = tool("ruff")
    lint = run(ruff, "check", ".")
    assert lint.returncode == 0, lint.stdout
    fmt = run(ruff, "format", "--check", ".")
    assert fmt.returncode == 0, fmt.stdout


def test_mypy_finds_no_type_error() -> None:
    result = run(tool("mypy"))  # files and strictness: [tool.mypy] in pyproject.toml
    assert result.returncode == 0, result.stdout + result.stderr


def dockerfile_exec_form(instruction: str) -> list[str]:
    """The JSON argv of the final stage's CMD or HEALTHCHECK ... CMD."""
    text = (PROJECT / "Dockerfile").read_text().replace("\\\n", " ")
    lines = [line for line in text.splitlines() if line.strip().startswith(instruction)]
    return json.loads(lines[-1].split("CMD", 1)[1].strip())


def dockerfile_env() -> dict[str, str]:
    """The ENV of the stage both images are built on (`runtime`)."""
    text = (PROJECT / "Dockerfile").read_text().replace("\\\n", " ")
    shared = text.split("\nFROM ${PYTHON_IMAGE} AS runtime\n", 1)[1].split("\nFROM ", 1)[0]
    env_line = next(line for line in shared.splitlines() if line.startswith("ENV "))
    return dict(re.findall(r"(\w+)=(\S+)", env_line))


@pytest.mark.slow
def test_image_start_and_healthcheck_commands_work_outside_docker(tiny_store: Path) -> None:
    start, check = dockerfile_exec_form("CMD"), dockerfile_exec_form("HEALTHCHECK")
    assert start == ["python", "-m", "app"]
    env = {k: v for k, v in dockerfile_env().items() if k != "PATH"}
    port = str(free_port())
    env.update(POSTER_MODEL_STORE=str(tiny_store), POSTER_PORT=port, POSTER_HOST="127.0.0.1")
    full_env = {**os.environ, **env, "PATH": f"{BIN}:{os.environ['PATH']}"}
    assert subprocess.run(check, env=full_env, timeout=30).returncode == 1  # nothing running yet
    server = subprocess.Popen(start, env=full_env, cwd=PROJECT, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 90  # the image's start period
        while time.monotonic() < deadline:
            if subprocess.run(check, env=full_env, timeout=30).returncode == 0:
                break
            assert server.poll() is None, "the server exited"
            time.sleep(0.5)
        else:
            pytest.fail("the healthcheck never passed")
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_the_image_copies_every_package_the_service_imports() -> None:
    from tests.test_layout import imported_top_level

    ours = {"app", "poster_genres", "training", "scorer", "tools", "bench", "tests"}
    needed = {"app"}
    pending = ["app"]
    while pending:  # follow the service's imports through our own packages
        for names in imported_top_level(pending.pop()).values():
            for name in (names & ours) - needed:
                needed.add(name)
                pending.append(name)
    text = (PROJECT / "Dockerfile").read_text()
    copied = set(re.findall(r"^COPY (\w+) \./\1$", text, flags=re.MULTILINE))
    assert needed == {"app", "poster_genres"}
    assert needed | {"scorer"} == copied  # and the scorer, for batch jobs and the image check


def test_compose_publishes_on_loopback_only_and_sizes_tmp() -> None:
    compose = (PROJECT / "docker-compose.yml").read_text()
    ports = re.findall(r'^\s+- "([^"]+:8000)"$', compose, flags=re.MULTILINE)
    assert ports == ["127.0.0.1:${POSTER_HOST_PORT:-8000}:8000"]  # loopback, 8000 by default
    assert re.search(r"^\s+- /tmp:size=\d+m", compose, flags=re.MULTILINE)
