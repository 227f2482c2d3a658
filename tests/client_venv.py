"""A virtualenv of its own for the protocol clients (tests/protocol-clients.txt), created once and
cached outside the checkout (keyed by the requirements and the Python version), so that a second
run, and every later CI run on the same machine, starts at once."""

from __future__ import annotations

import fcntl
import hashlib
import os
import subprocess
import sys
from pathlib import Path

REQUIREMENTS = Path(__file__).with_name("protocol-clients.txt")


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "poster-genres"


def client_python() -> Path:
    """The Python of the clients' virtualenv, creating it first when needed (a few minutes,
    from PyPI). CalledProcessError when it cannot be made."""
    key = hashlib.sha256(REQUIREMENTS.read_bytes() + sys.version.encode()).hexdigest()[:16]
    venv = cache_root() / f"protocol-clients-{key}"
    python = venv / "bin" / "python"
    ready = venv / ".complete"
    cache_root().mkdir(parents=True, exist_ok=True)
    with (cache_root() / "protocol-clients.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two test processes never build it at once
        if not ready.exists():
            subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
            install = [
                str(python),
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
            ]
            subprocess.run([*install, "-r", str(REQUIREMENTS)], check=True, timeout=900)
            ready.touch()
    return python
