"""Bring docker-compose.yml up with this machine's compose, and check the image serves.

    python -m deploy.docker_check MODEL_VERSION slim=TAG [keras=TAG]   # from the project root

For each image target, the compose file itself runs the built image (the v2 plugin, or Debian's
docker-compose 1.29 where there is none) on a free loopback port: its size and cold start;
healthy; every restriction of the file applied (read-only root, capabilities, CPU and memory
limits, tmpfs, a non-root user); one real poster posted to /predict, whose probabilities equal the
tested venv's scorer at the 4 decimals the service shows; the unrounded float32 probabilities of
the scorer inside the running container and in the venv bit-identical (under LiteRT in the slim
image, under Keras in the keras one); then `compose stop` ends it within the file's stop grace.
Prints the figures; exit 1 on any failure. `compose down` removes what it started, whatever
happens.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from deploy.compose import (
    COMPOSE_FILE,
    HOST_PORT_VARIABLE,
    IMAGE_TAG_VARIABLE,
    TARGET_VARIABLE,
    Compose,
    compose_command,
)
from deploy.dockerlib import (
    PROJECT,
    SERVICE,
    compose_service,
    docker,
    docker_bin,
    predict,
    ready_time,
    seconds,
    started_time,
    state,
    wait_healthy,
)
from devkit.dataset import first_poster
from devkit.ports import free_port
from poster_genres.decision import SHOWN_DECIMALS, shown


def exact_in_venv(poster: Path, version: str, runtime: str) -> list[str]:
    """The scorer's full-precision float32 probabilities for `poster`, in the venv."""
    folder = Path(tempfile.mkdtemp(prefix="docker-check-"))
    try:
        shutil.copy(poster, folder / "poster.jpg")
        out = folder / "out.jsonl"
        subprocess.run(
            [sys.executable, "-m", "scorer", str(folder), "--out", str(out), "--quiet",
             "--full-precision", "--runtime", runtime,
             "--model-dir", str(PROJECT / "model_store/poster-genres" / version)],
            cwd=PROJECT, capture_output=True, text=True, check=True, timeout=300,
        )  # fmt: skip
        return scored_line(out.read_text())
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def exact_in_container(container: str, poster: Path, runtime: str) -> list[str]:
    """The same scorer command inside the running service's container (its model, its code),
    with the poster sent on stdin into the container's /tmp."""
    script = (
        "mkdir -p /tmp/check && cat > /tmp/check/poster.jpg && python -m scorer /tmp/check "
        f"--out /tmp/check/out.jsonl --quiet --full-precision --runtime {runtime} "
        "&& cat /tmp/check/out.jsonl"
    )
    result = subprocess.run(
        [docker_bin(), "exec", "-i", container, "sh", "-c", script],
        input=poster.read_bytes(), capture_output=True, timeout=300, check=False,
    )  # fmt: skip
    if result.returncode != 0:
        raise RuntimeError(f"the scorer in the container failed: {result.stderr.decode()[-800:]}")
    return scored_line(result.stdout.decode())


def scored_line(jsonl: str) -> list[str]:
    """(genre, probability) of the one scored row, as text: equal text is equal float32."""
    record = json.loads(jsonl.strip().splitlines()[-1])
    return [f"{genre}={value!r}" for genre, value in record["probabilities"].items()]


def restrictions_applied(container: str, service: dict[str, Any]) -> list[str]:
    """What of the compose file's restrictions the engine did not apply to `container`."""
    host = json.loads(docker("inspect", "--format", "{{json .HostConfig}}", container))
    user = docker("exec", container, "id", "-u")
    limits = service["deploy"]["resources"]["limits"]
    expected = {
        "read-only root": (host["ReadonlyRootfs"], bool(service.get("read_only"))),
        "dropped capabilities": (sorted(host["CapDrop"] or []), sorted(service["cap_drop"])),
        "security options": (sorted(host["SecurityOpt"] or []), sorted(service["security_opt"])),
        "CPU limit": (host["NanoCpus"], round(float(limits["cpus"]) * 1e9)),
        "memory limit": (host["Memory"], memory_bytes(limits["memory"])),
        "tmpfs on /tmp": ("/tmp" in (host["Tmpfs"] or {}), True),
        "a user other than root": (user != "0", True),
    }
    return [
        f"{what}: {got!r}, expected {want!r}"
        for what, (got, want) in expected.items()
        if got != want
    ]


def memory_bytes(text: str) -> int:
    units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
    return int(float(text[:-1]) * units[text[-1].lower()]) if text[-1].isalpha() else int(text)


def lock_drift() -> list[str]:
    """Packages whose version in this venv differs from the lock's (the image's)."""
    from importlib.metadata import PackageNotFoundError, version

    drift = []
    for line in (PROJECT / "requirements.lock").read_text().splitlines():
        if "==" in line and not line.startswith((" ", "#")):
            name, pinned = line.split()[0].split("==")
            try:
                installed = version(name)
            except PackageNotFoundError:
                installed = "absent"
            if installed != pinned:
                drift.append(f"{name} {installed} (lock {pinned})")
    return drift


# The image targets of the Dockerfile: (target, runtime the exact check uses inside and outside).
TARGETS = {"slim": "litert", "keras": "keras"}


def check_target(target: str, tag: str, version: str, command: list[str]) -> list[str]:
    """docker-compose.yml up with the image `tag` of `target`; what failed (empty: all passed)."""
    service = compose_service()
    grace = seconds(service["stop_grace_period"])
    port = free_port()
    project = Compose(
        command, f"poster-genres-check-{uuid.uuid4().hex[:8]}", [COMPOSE_FILE],
        {HOST_PORT_VARIABLE: str(port), IMAGE_TAG_VARIABLE: tag, TARGET_VARIABLE: target},
    )  # fmt: skip
    runtime = TARGETS[target]
    size = int(docker("image", "inspect", "-f", "{{.Size}}", f"poster-genres:{tag}"))
    print(f"== {target} image poster-genres:{tag}: {size / 1e6:.0f} MB; compose up on port {port}")
    failures: list[str] = []
    name = ""
    try:
        project.run("up", "--detach", "--no-build")
        (name,) = project.containers(SERVICE)
        healthy_at = wait_healthy(name, timeout=seconds(service["healthcheck"]["start_period"]))
        started = started_time(name)
        ready = ready_time(name)
        ready_s = f"{ready - started:.1f} s" if ready else "?"
        print(
            f"   cold start: ready (listening) {ready_s} after the container started, healthy "
            f"{healthy_at - started:.1f} s"
        )
        missing = restrictions_applied(name, service)
        print("   restrictions: " + ("; ".join(missing) if missing else "all applied"))
        failures += [f"compose did not apply {m}" for m in missing]
        poster = first_poster()
        answer = predict(port, poster)
        served = {p["genre"]: p["probability"] for p in answer["probabilities"]}
        predicted = [p["genre"] for p in answer["predicted"]]
        print(f"   /predict {poster.name}: version {answer['version']}, predicted {predicted}")
        if answer["version"] != version:
            failures.append(f"served version {answer['version']}, expected {version}")
        outside = exact_in_venv(poster, version, "auto")
        local = {g: float(p) for g, p in (pair.split("=", 1) for pair in outside)}
        if list(local) != list(served):
            failures.append("the image and the venv list different genres")
        same = sum(shown(local[g]) == served[g] for g in served)
        print(
            f"   /predict vs the venv, at the {SHOWN_DECIMALS} decimals shown: "
            f"{same} of {len(served)} equal"
        )
        if same != len(served):
            failures.append("the served probabilities differ from the venv's")
        inside = exact_in_container(name, poster, runtime)
        expected = outside if runtime == "litert" else exact_in_venv(poster, version, runtime)
        identical = sum(a == b for a, b in zip(inside, expected, strict=True))
        print(
            f"   unrounded float32 under {runtime}, image vs venv: {identical} of {len(local)} "
            "bit-identical"
        )
        if identical != len(local):
            failures.append(f"the image's unrounded {runtime} probabilities differ from the venv's")
        before = time.monotonic()
        project.run("stop", "--timeout", str(round(grace)), timeout=grace + 30)
        stop_s = time.monotonic() - before
        code = state(name)["ExitCode"]
        print(f"   compose stop: {stop_s:.1f} s (grace {grace:.0f} s), exit code {code}")
        if code not in (0, 143) or stop_s >= grace:
            failures.append(f"stop took {stop_s:.1f} s with exit code {code}")
    except Exception as exc:  # any failure is reported with the container's logs
        failures.append(str(exc))
        if name:
            print(docker("logs", "--tail", "30", name, check=False), file=sys.stderr)
    finally:
        project.down()
    return [f"{target}: {failure}" for failure in failures]


def main() -> int:
    version, tags = sys.argv[1], dict(arg.split("=", 1) for arg in sys.argv[2:])
    command = compose_command(docker_bin())
    if command is None:
        raise SystemExit("no compose: neither `docker compose` nor docker-compose is installed")
    version_line = subprocess.run([*command, "version"], capture_output=True, text=True).stdout
    print(f"== compose: {' '.join(command)} ({version_line.strip().splitlines()[0]})")
    failures: list[str] = []
    for target, tag in tags.items():
        failures += check_target(target, tag, version, command)
    drift = lock_drift()
    print("   venv vs requirements.lock: " + (", ".join(drift) if drift else "same versions"))
    for failure in failures:
        print(f"FAILED: {failure}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
