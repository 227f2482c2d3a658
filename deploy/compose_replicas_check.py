"""deploy/compose.replicas.yml brought up for real with this machine's compose.

    python -m deploy.compose_replicas_check      # from the project root

The images must be built (make replicas-check builds them). Three replicas and the nginx balancer
start on a free loopback port; once nginx answers ready, real posters are posted through it and
every answer must be a 200 from the pinned version; then `compose down`. What make replicas-check
does with `docker run` (stopping, killing and replacing replicas under load) compose cannot do one
replica at a time; this proves the file itself runs under the compose CI has (Debian's 1.29).
"""

from __future__ import annotations

import sys
import time
import urllib.request
import uuid

from deploy.compose import HOST_PORT_VARIABLE, REPLICAS_FILE, Compose, compose_command
from deploy.dockerlib import SERVICE, docker_bin, predict
from devkit.dataset import first_poster
from devkit.ports import free_port

POSTS = 12


def main() -> int:
    command = compose_command(docker_bin())
    if command is None:
        raise SystemExit("no compose: neither `docker compose` nor docker-compose is installed")
    port = free_port()
    project = Compose(
        command, f"poster-genres-replicas-{uuid.uuid4().hex[:8]}", [REPLICAS_FILE],
        {HOST_PORT_VARIABLE: str(port)},
    )  # fmt: skip
    started = time.monotonic()
    try:
        project.run("up", "--detach", "--no-build", timeout=300)
        replicas = project.containers(SERVICE)
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health/ready", timeout=2):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("nginx never answered ready") from None
                time.sleep(0.5)
        ready_s = time.monotonic() - started
        poster = first_poster()
        versions = {str(predict(port, poster)["version"]) for _ in range(POSTS)}
        print(
            f"== {' '.join(command)} -f deploy/compose.replicas.yml: {len(replicas)} replicas and "
            f"nginx ready in {ready_s:.1f} s; {POSTS} posts through nginx: 200, version "
            f"{', '.join(sorted(versions))}"
        )
        if len(replicas) != 3:
            print(f"FAILED: {len(replicas)} replicas, expected 3", file=sys.stderr)
            return 1
        return 0
    except Exception as exc:
        print(f"FAILED: the replicas' compose file: {exc}", file=sys.stderr)
        return 1
    finally:
        project.down()


if __name__ == "__main__":
    sys.exit(main())
