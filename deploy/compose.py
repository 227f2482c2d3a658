"""Which compose this machine has, and the project's compose files run through it.

The v2 plugin (`docker compose`) where the client has it; else the standalone `docker-compose`
(Debian bookworm's docker.io has no plugin, and its `docker-compose` package is 1.29). Both read
the same files: the project's compose files keep to what 1.29 understands (no top-level `name`;
`deploy.replicas`, which 1.29 honours).
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

# Only the standard library: deploy/engine.sh runs this file with any python3 to find compose.
PROJECT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = PROJECT / "docker-compose.yml"
REPLICAS_FILE = PROJECT / "deploy" / "compose.replicas.yml"
# docker-compose.yml publishes 127.0.0.1:${POSTER_HOST_PORT:-8000}: the checks pick a free port.
HOST_PORT_VARIABLE = "POSTER_HOST_PORT"
# ...and runs poster-genres:${POSTER_IMAGE_TAG:-2.2.0}, built from the Dockerfile's target
# ${POSTER_IMAGE_TARGET:-slim}: the image check runs both targets through it.
IMAGE_TAG_VARIABLE = "POSTER_IMAGE_TAG"
TARGET_VARIABLE = "POSTER_IMAGE_TARGET"


def compose_command(docker: str | None, path: str | None = None) -> list[str] | None:
    """The argv prefix of this machine's compose: `[docker, "compose"]` when the client's v2
    plugin answers, else `[docker-compose]` found on `path` (default: PATH), else None."""
    if docker is not None:
        try:
            plugin = subprocess.run(
                [docker, "compose", "version"], capture_output=True, text=True, timeout=30
            )
        except OSError:
            plugin = None
        if plugin is not None and plugin.returncode == 0:
            return [docker, "compose"]
    standalone = shutil.which("docker-compose", path=path)
    return [standalone] if standalone else None


class Compose:
    """One compose project: `up`, `ps`, `stop`, `down`, with the files and environment fixed."""

    def __init__(
        self,
        command: Sequence[str],
        project: str,
        files: Sequence[Path],
        env: dict[str, str] | None = None,
    ) -> None:
        self.argv = [*command, "--project-name", project]
        for file in files:
            self.argv += ["--file", str(file)]
        self.env = {**os.environ, **(env or {})}

    def run(self, *args: str, timeout: float = 300, check: bool = True) -> str:
        result = subprocess.run(
            [*self.argv, *args],
            cwd=PROJECT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and result.returncode != 0:
            raise RuntimeError(f"compose {' '.join(args)}: {result.stderr.strip()[-2000:]}")
        return result.stdout.strip()

    def containers(self, service: str) -> list[str]:
        """The ids of `service`'s containers, running or not."""
        return self.run("ps", "--quiet", service).split()

    def down(self) -> None:
        """Stop and remove every container and network of the project (never raises)."""
        self.run("down", "--volumes", "--timeout", "30", check=False, timeout=120)


if __name__ == "__main__":
    # `python3 deploy/compose.py [DOCKER]`: print this machine's compose command, or exit 1.
    found = compose_command(sys.argv[1] if len(sys.argv) > 1 else shutil.which("docker"))
    if found is None:
        sys.exit(1)
    print(shlex.join(found))
