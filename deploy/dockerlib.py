"""What the image checks share: the engine, and the compose file turned into `docker run` flags.

`make docker-check` runs docker-compose.yml itself (deploy/compose.py). `make replicas-check`
starts, stops, kills and replaces single replicas, which compose does not do one at a time, so it
runs them with `docker run` and flags read from docker-compose.yml: a restriction added there
reaches it, and a key this module does not know stops it instead of being dropped.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.request
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

PROJECT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = PROJECT / "docker-compose.yml"
SERVICE = "poster-genres"
# Keys of the compose service and what becomes of them; anything else is an error.
HANDLED_KEYS = {
    "build", "image", "ports", "environment", "healthcheck", "restart", "read_only", "tmpfs",
    "cap_drop", "security_opt", "deploy", "stop_grace_period",
}  # fmt: skip


def docker_bin() -> str:
    """Debian's client when present (it matches its engine and has BuildKit built in)."""
    if Path("/usr/bin/docker").exists():
        return "/usr/bin/docker"
    found = shutil.which("docker")
    if found is None:
        raise SystemExit("no docker client")
    return found


def docker(*args: str, check: bool = True, timeout: float = 120) -> str:
    result = subprocess.run(
        [docker_bin(), *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and result.returncode != 0:
        raise RuntimeError(f"docker {' '.join(args)}: {result.stderr.strip()}")
    return result.stdout.strip()


def compose_service(path: Path = COMPOSE_FILE) -> dict[str, Any]:
    service: dict[str, Any] = yaml.safe_load(path.read_text())["services"][SERVICE]
    return service


def seconds(duration: str | int | float) -> float:
    """A compose duration ("30s", "1m30s", "500ms") in seconds."""
    if isinstance(duration, int | float):
        return float(duration)
    total, number = 0.0, ""
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    text = duration.strip()
    i = 0
    while i < len(text):
        if text[i].isdigit() or text[i] == ".":
            number += text[i]
            i += 1
            continue
        unit = "ms" if text.startswith("ms", i) else text[i]
        total += float(number) * units[unit]
        number, i = "", i + len(unit)
    return total


def run_flags(service: dict[str, Any], *, extra_env: dict[str, str] | None = None) -> list[str]:
    """The `docker run` flags equal to the compose service's settings, for replicas behind a
    balancer: no published port. Healthcheck, limits, capabilities, read-only root, tmpfs,
    restart policy and stop grace are always those of the file.
    """
    unknown = set(service) - HANDLED_KEYS
    if unknown:
        raise ValueError(f"docker-compose.yml keys the checks do not translate: {sorted(unknown)}")
    flags: list[str] = []
    env = dict(service.get("environment") or {})
    env.update(extra_env or {})
    for key, value in env.items():
        flags += ["--env", f"{key}={value}"]
    health = service.get("healthcheck")
    if health:
        test = health["test"]
        if test[0] == "CMD":
            # docker run takes a shell command; the argv has no characters that need quoting.
            flags += ["--health-cmd", " ".join(test[1:])]
        else:
            raise ValueError(f"healthcheck test form {test[0]} not translated")
        for key, flag in (
            ("interval", "--health-interval"),
            ("timeout", "--health-timeout"),
            ("start_period", "--health-start-period"),
        ):
            if key in health:
                flags += [flag, health[key]]
        if "retries" in health:
            flags += ["--health-retries", str(health["retries"])]
    if service.get("restart"):
        flags += ["--restart", service["restart"]]
    if service.get("read_only"):
        flags.append("--read-only")
    for mount in service.get("tmpfs", []):
        flags += ["--tmpfs", mount]
    for cap in service.get("cap_drop", []):
        flags += ["--cap-drop", cap]
    for option in service.get("security_opt", []):
        flags += ["--security-opt", option]
    limits = (service.get("deploy") or {}).get("resources", {}).get("limits", {})
    unknown_limits = set(limits) - {"cpus", "memory"}
    if unknown_limits or set(service.get("deploy") or {}) - {"resources"}:
        raise ValueError(f"deploy settings the checks do not translate: {service['deploy']}")
    if "cpus" in limits:
        flags += ["--cpus", str(limits["cpus"])]
    if "memory" in limits:
        flags += ["--memory", str(limits["memory"])]
    if "stop_grace_period" in service:
        flags += ["--stop-timeout", str(round(seconds(service["stop_grace_period"])))]
    return flags


def parse_time(stamp: str) -> float:
    """Docker's RFC 3339 nanosecond timestamps as epoch seconds."""
    stamp = stamp.strip().replace("Z", "+00:00")
    if "." in stamp:
        head, rest = stamp.split(".", 1)
        digits = "".join(ch for ch in rest if ch.isdigit())
        zone = rest[len(digits) :]
        stamp = f"{head}.{digits[:6]}{zone}"
    return datetime.fromisoformat(stamp).timestamp()


def state(name: str) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(docker("inspect", "--format", "{{json .State}}", name))
    return result


def wait_healthy(name: str, timeout: float = 120) -> float:
    """Wait until Docker marks `name` healthy; the epoch time it was first seen healthy."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        current = state(name)
        if current.get("Health", {}).get("Status") == "healthy":
            return time.time()
        if current["Status"] in {"exited", "dead"}:
            logs = docker("logs", "--tail", "20", name, check=False)
            raise RuntimeError(f"{name} exited ({current['ExitCode']}):\n{logs}")
        time.sleep(0.1)
    raise RuntimeError(f"{name} not healthy within {timeout:.0f} s")


def ready_time(name: str) -> float | None:
    """When uvicorn started listening (the service is ready then: warm-up comes before)."""
    result = subprocess.run(
        [docker_bin(), "logs", "--timestamps", name], capture_output=True, text=True, check=False
    )
    for line in (result.stdout + result.stderr).splitlines():
        if "Uvicorn running on" in line:
            return parse_time(line.split(" ", 1)[0])
    return None


def started_time(name: str) -> float:
    return parse_time(state(name)["StartedAt"])


def env_flag(name: str) -> bool:
    return os.environ.get(name, "").lower() in {"1", "true", "yes"}


def predict(port: int, poster: Path) -> dict[str, Any]:
    """`poster` posted to /predict on 127.0.0.1:`port` (a published container or the balancer):
    the service's JSON answer."""
    boundary = uuid.uuid4().hex
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{poster.name}"\r\n'
            f"Content-Type: image/jpeg\r\n\r\n"
        ).encode()
        + poster.read_bytes()
        + f"\r\n--{boundary}--\r\n".encode()
    )
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/predict",
        data=body,
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    with urllib.request.urlopen(request, timeout=30) as answer:
        result: dict[str, Any] = json.loads(answer.read())
        return result
