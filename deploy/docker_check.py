"""Run the built image exactly as docker-compose.yml restricts it, and check it serves.

    python deploy/docker_check.py IMAGE MODEL_VERSION

Healthy, then one real poster posted to /predict: its probabilities must equal the tested venv's
for the same file and model version (same code, same lock) at the 4 decimals the service shows; the
unrounded float32 probabilities, computed inside the image and in the venv by the same few lines,
must be bit-identical; then `docker stop` must end it within the compose file's
stop grace. Prints the figures; exit 1 on
any failure. Every container it starts is removed.
"""

from __future__ import annotations

import csv
import json
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

from dockerlib import (
    PROJECT,
    compose_service,
    docker,
    ready_time,
    run_flags,
    seconds,
    started_time,
    state,
    wait_healthy,
)

DATA = PROJECT.parent / "shared" / "data" / "Multi_Label_dataset"
DECIMALS = 4  # the service rounds probabilities to 4 decimals: equal up to that rounding, + 1e-5
TOLERANCE = 0.5 * 10**-DECIMALS + 1e-5


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def a_real_poster() -> Path:
    with (DATA / "train.csv").open(newline="") as handle:
        first = next(csv.DictReader(handle))["Id"]
    return DATA / "Images" / f"{first}.jpg"


def predict(port: int, poster: Path) -> dict[str, object]:
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
        result: dict[str, object] = json.loads(answer.read())
        return result


# The same lines inside the image and in the venv: the model's float32 answer, as exact hex floats.
EXACT = """
import json, sys
from pathlib import Path
from poster_genres.runtime import import_tensorflow
import_tensorflow()
from poster_genres.artifact import load_version
from poster_genres.classifier import GenreClassifier
from poster_genres.preprocessing import poster_to_input
classifier = GenreClassifier(load_version(Path(sys.argv[1])), max_batch=1)
row = classifier.predict(poster_to_input(Path(sys.argv[2]).read_bytes())[None])[0]
print(json.dumps({"genres": classifier.genres, "hex": [float(p).hex() for p in row]}))
"""


def exact_in_venv(poster: Path, version: str) -> dict[str, list[str]]:
    model_dir = PROJECT / "model_store" / "poster-genres" / version
    result = subprocess.run(
        [sys.executable, "-c", EXACT, str(model_dir), str(poster)],
        cwd=PROJECT, capture_output=True, text=True, check=True, timeout=300,
    )  # fmt: skip
    values: dict[str, list[str]] = json.loads(result.stdout.strip().splitlines()[-1])
    return values


def exact_in_image(
    image: str, service: dict[str, object], poster: Path, version: str
) -> dict[str, list[str]]:
    """The same computation in a one-off container with the service's restrictions, no network."""
    flags = run_flags(service, publish=False)
    if "--restart" in flags:  # a one-off container is removed, not restarted
        at = flags.index("--restart")
        del flags[at : at + 2]
    output = docker(
        "run", "--rm", "--network", "none", *flags,
        "--volume", f"{poster}:/check/poster.jpg:ro",
        image, "python", "-c", EXACT,
        f"/srv/model_store/poster-genres/{version}", "/check/poster.jpg",
        timeout=300,
    )  # fmt: skip
    values: dict[str, list[str]] = json.loads(output.strip().splitlines()[-1])
    return values


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


def main() -> int:
    image, version = sys.argv[1], sys.argv[2]
    service = compose_service()
    grace = seconds(service["stop_grace_period"])
    port = free_port()
    name = f"poster-genres-check-{uuid.uuid4().hex[:8]}"
    flags = run_flags(service, host_port=port)
    print(f"== docker run {' '.join(flags)} {image}")
    failures: list[str] = []
    try:
        docker("run", "--detach", "--name", name, *flags, image)
        healthy_at = wait_healthy(name, timeout=seconds(service["healthcheck"]["start_period"]))
        started = started_time(name)
        ready = ready_time(name)
        ready_s = f"{ready - started:.1f} s" if ready else "?"
        print(
            f"   ready (uvicorn listening) {ready_s} after start, healthy {healthy_at - started:.1f} s"
        )
        user = docker("exec", name, "id", "-u")
        if user == "0":
            failures.append("the service runs as root")
        poster = a_real_poster()
        answer = predict(port, poster)
        served = {p["genre"]: p["probability"] for p in answer["probabilities"]}  # type: ignore[attr-defined]
        print(f"   /predict {poster.name}: version {answer['version']}, predicted "
              f"{[p['genre'] for p in answer['predicted']]}")  # type: ignore[attr-defined]  # fmt: skip
        if answer["version"] != version:
            failures.append(f"served version {answer['version']}, expected {version}")
        outside = exact_in_venv(poster, version)
        local = {
            g: float.fromhex(p) for g, p in zip(outside["genres"], outside["hex"], strict=True)
        }
        if list(local) != list(served):
            failures.append("the image and the venv list different genres")
        worst = max(abs(local[g] - served[g]) for g in served)
        same = all(round(local[g], DECIMALS) == served[g] for g in served)
        print(
            f"   vs the venv: largest difference {worst:.1e} (rounding: "
            f"{0.5 * 10**-DECIMALS:.0e}); rounded to {DECIMALS} decimals "
            + ("all 25 equal" if same else "NOT all equal")
        )
        if worst > TOLERANCE:
            failures.append(f"probabilities differ from the venv's by {worst:.2e} > {TOLERANCE}")
        inside = exact_in_image(image, service, poster, version)
        identical = sum(a == b for a, b in zip(inside["hex"], outside["hex"], strict=True))
        print(f"   unrounded float32, image vs venv: {identical} of {len(local)} bit-identical")
        if inside["genres"] != outside["genres"] or identical != len(local):
            failures.append("the image's unrounded probabilities differ from the venv's")
        drift = lock_drift()
        print("   venv vs requirements.lock: " + (", ".join(drift) if drift else "same versions"))
        before = time.monotonic()
        docker("stop", "--time", str(round(grace)), name, timeout=grace + 30)
        stop_s = time.monotonic() - before
        code = state(name)["ExitCode"]
        print(f"   docker stop: {stop_s:.1f} s (grace {grace:.0f} s), exit code {code}")
        if code not in (0, 143) or stop_s >= grace:
            failures.append(f"stop took {stop_s:.1f} s with exit code {code}")
    except Exception as exc:  # any failure is reported with the container's logs
        failures.append(str(exc))
        print(docker("logs", "--tail", "30", name, check=False), file=sys.stderr)
    finally:
        docker("rm", "--force", name, check=False)
    for failure in failures:
        print(f"FAILED: {failure}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
