"""The image's files agree with each other; `make docker-check` builds and runs the image itself.

What is checked here needs no Docker engine: the checks' `docker run` flags are exactly the compose
file's restrictions, the replicas' compose file runs them as the main one does, the model version
is pinned once, the lock pins every runtime dependency by hash.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from deploy import compose as composelib
from deploy import dockerlib
from tests.conftest import IN_CI

PROJECT = Path(__file__).resolve().parents[1]


def compose(path: str) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((PROJECT / path).read_text())
    return loaded


def tool(name: str) -> str:
    path = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    if path is None:
        if IN_CI:
            pytest.fail(f"{name} is not installed (required when CI=true)")
        pytest.skip(f"{name} is not installed")
    return path


def pairs(flags: list[str]) -> set[tuple[str, str]]:
    return {(flags[i], flags[i + 1]) for i in range(len(flags) - 1) if flags[i].startswith("--")}


def test_the_checks_run_the_image_with_exactly_the_compose_restrictions() -> None:
    service = dockerlib.compose_service()
    flags = dockerlib.run_flags(service)
    expected = {
        ("--tmpfs", "/tmp:size=256m,mode=1777"),
        ("--cap-drop", "ALL"),
        ("--security-opt", "no-new-privileges:true"),
        ("--cpus", "2"),
        ("--memory", "3g"),
        ("--stop-timeout", "30"),
        ("--restart", "unless-stopped"),
        ("--health-cmd", "python -m app.healthcheck"),
        ("--health-interval", service["healthcheck"]["interval"]),
        ("--health-start-period", service["healthcheck"]["start_period"]),
    } | {("--env", f"{k}={v}") for k, v in service["environment"].items()}
    assert expected <= pairs(flags)
    assert "--read-only" in flags
    assert "--publish" not in flags  # replicas sit behind the balancer


@pytest.mark.parametrize(
    "change",
    [
        {"privileged": True},
        {"volumes": ["./x:/x"]},
        {"deploy": {"resources": {"limits": {"pids": 9}}}},
    ],
)
def test_a_compose_setting_the_checks_cannot_translate_stops_them(change: dict[str, Any]) -> None:
    service = {**dockerlib.compose_service(), **change}
    with pytest.raises(ValueError, match="translate"):
        dockerlib.run_flags(service)


def test_compose_durations() -> None:
    assert dockerlib.seconds("30s") == 30
    assert dockerlib.seconds("1m30s") == 90
    assert dockerlib.seconds("500ms") == 0.5


def test_the_replicas_run_as_the_compose_file_says() -> None:
    single = compose("docker-compose.yml")["services"]["poster-genres"]
    replicas = compose("deploy/compose.replicas.yml")["services"]
    service = replicas["poster-genres"]
    assert service["deploy"].pop("replicas") == 3
    assert "ports" not in service
    for key in ("ports", "build"):
        single.pop(key)
    service.pop("build")
    assert service == single
    assert replicas["balancer"]["ports"] == ["127.0.0.1:${POSTER_HOST_PORT:-8000}:8080"]


def test_the_replicas_compose_file_follows_the_compose_spec() -> None:
    result = subprocess.run(
        [tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec",
         "deploy/compose.replicas.yml"],
        cwd=PROJECT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_balancer_dockerfile_passes_hadolint() -> None:
    result = subprocess.run(
        [tool("hadolint"), "deploy/nginx/Dockerfile"], cwd=PROJECT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_balancer_retries_posts_and_resolves_through_docker_dns() -> None:
    conf = (PROJECT / "deploy/nginx/nginx.conf").read_text()
    assert "resolver 127.0.0.11" in conf
    assert re.search(r"proxy_next_upstream error timeout http_503 non_idempotent;", conf)
    assert "proxy_pass http://$replicas:8000;" in conf


def test_image_and_compose_healthchecks_agree() -> None:
    text = (PROJECT / "Dockerfile").read_text().replace("\\\n", " ")
    line = next(x for x in text.splitlines() if x.startswith("HEALTHCHECK"))
    options = dict(re.findall(r"--([\w-]+)=(\S+)", line))
    health = compose("docker-compose.yml")["services"]["poster-genres"]["healthcheck"]
    assert options == {
        "interval": health["interval"],
        "timeout": health["timeout"],
        "start-period": health["start_period"],
        "retries": str(health["retries"]),
    }


def test_the_image_serves_one_pinned_committed_model_version() -> None:
    text = (PROJECT / "Dockerfile").read_text()
    # Once: the checks read it with sed, and a value over several lines breaks the builder.
    (version,) = re.findall(r"^ARG MODEL_VERSION=(\S+)$", text, flags=re.MULTILINE)
    assert "ENV POSTER_MODEL_VERSION=${MODEL_VERSION}" in text
    for name in ("model.keras", "model.tflite"):  # keras target / both targets
        assert (PROJECT / "model_store" / "poster-genres" / version / name).is_file()
    # Never the whole store: the images take only the listed versions, from the models stage.
    assert "COPY model_store /" not in text
    assert text.count("COPY --from=models /litert/ /srv/model_store/") == 1
    assert text.count("COPY --from=models /keras/ /srv/model_store/") == 1
    assert re.findall(r"^COPY model_store\S* ", text, flags=re.MULTILINE) == [
        "COPY model_store/poster-genres "
    ]  # into the models stage only, which is never shipped
    deployment = (PROJECT / "deploy/kubernetes/deployment.yaml").read_text()
    assert re.search(rf'POSTER_MODEL_VERSION.*\n\s+value: "{re.escape(version)}"', deployment)
    assert not text.startswith("# syntax")  # BuildKit would fetch a frontend image


def test_the_lock_pins_every_runtime_dependency_with_hashes() -> None:
    lock = (PROJECT / "requirements.lock").read_text()
    entries = re.findall(
        r"^([A-Za-z0-9._-]+)==(\S+)((?:\s*\\\n\s+--hash=sha256:[0-9a-f]{64})+)", lock, re.MULTILINE
    )
    pinned = {name.lower().replace("_", "-") for name, _, _ in entries}
    requirements = tomllib.loads((PROJECT / "pyproject.toml").read_text())["project"][
        "dependencies"
    ]
    for requirement in requirements:
        name = re.split(r"[\[<>=!~ ]", requirement, maxsplit=1)[0].lower().replace("_", "-")
        assert name in pinned, f"{name} is not pinned in requirements.lock"
    assert len(entries) == lock.count("==")  # every pin carries hashes
    slim = (PROJECT / "requirements-slim.lock").read_text()
    slim_pins = set(re.findall(r"^([A-Za-z0-9._-]+)==\S+ \\$", slim, re.MULTILINE))
    assert "ai-edge-litert" in slim_pins and "ai-edge-litert" in pinned
    assert not slim_pins & {"tensorflow-cpu", "tensorflow", "keras", "tf-keras"}  # the slim image
    hashed = re.findall(
        r"^[A-Za-z0-9._-]+==\S+(?:\s*\\\n\s+--hash=sha256:[0-9a-f]{64})+", slim, re.MULTILINE
    )
    assert len(hashed) == slim.count("==")  # every pin of the slim lock carries hashes too
    assert "libclang" not in pinned  # never imported at run time (see deploy/update-lock.sh)
    text = (PROJECT / "Dockerfile").read_text()
    assert "--require-hashes --no-deps" in text


def test_the_build_context_is_only_what_the_image_uses() -> None:
    ignore = (PROJECT / ".dockerignore").read_text().splitlines()
    assert "*" in ignore  # everything excluded, then only these let in:
    included = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    assert included == {
        "requirements.lock", "requirements-slim.lock", "pyproject.toml", "README.md", "app",
        "poster_genres", "scorer", "model_store",
    }  # fmt: skip


def fake_program(folder: Path, name: str, succeeds_with: str) -> str:
    """An executable that exits 0 only when its arguments are `succeeds_with`."""
    folder.mkdir(exist_ok=True)
    program = folder / name
    program.write_text(f'#!/bin/sh\n[ "$*" = "{succeeds_with}" ]\n')
    program.chmod(0o755)
    return str(program)


def test_compose_detection_prefers_the_plugin_then_the_standalone(tmp_path: Path) -> None:
    with_plugin = fake_program(tmp_path / "a", "docker", "compose version")
    without_plugin = fake_program(tmp_path / "b", "docker", "version")
    empty = str(tmp_path / "nothing")
    assert composelib.compose_command(with_plugin, path=empty) == [with_plugin, "compose"]
    assert composelib.compose_command(without_plugin, path=empty) is None
    standalone = fake_program(tmp_path / "b", "docker-compose", "version")
    folder = str(tmp_path / "b")
    assert composelib.compose_command(without_plugin, path=folder) == [standalone]
    assert composelib.compose_command(None, path=folder) == [standalone]
    # The plugin wins when both are there.
    fake_program(tmp_path / "a", "docker-compose", "version")
    assert composelib.compose_command(with_plugin, path=str(tmp_path / "a")) == [
        with_plugin,
        "compose",
    ]


def test_engine_sh_finds_compose_through_the_tested_module(tmp_path: Path) -> None:
    def found(docker: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "deploy/compose.py", docker],
            cwd=PROJECT, env={"PATH": str(tmp_path / "nothing")}, capture_output=True, text=True,
        )  # fmt: skip

    plugin = found(fake_program(tmp_path / "a", "docker", "compose version"))
    assert plugin.returncode == 0 and plugin.stdout.split() == [
        str(tmp_path / "a/docker"),
        "compose",
    ]
    neither = found(fake_program(tmp_path / "b", "docker", "version"))
    assert neither.returncode == 1 and neither.stdout == ""
    assert (
        'python3 "$engine_dir/compose.py" "$DOCKER"' in (PROJECT / "deploy/engine.sh").read_text()
    )


REPLICAS_COMMAND = (
    "docker-compose --project-name poster-genres-replicas -f deploy/compose.replicas.yml up --build"
)


def test_every_place_gives_the_same_replicas_command() -> None:
    for place in ("deploy/compose.replicas.yml", "docker-compose.yml", "README.md"):
        text = " ".join((PROJECT / place).read_text().replace("#", " ").split())
        assert REPLICAS_COMMAND in text, place
    # Compose 1.29 refuses a top-level `name`; the command line names the project instead.
    assert "name" not in compose("deploy/compose.replicas.yml")
