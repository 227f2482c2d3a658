"""Run a command-line entry point in a fresh interpreter and prove it never imported TensorFlow."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
NO_TENSORFLOW_EXIT = 99


def run_without_tensorflow(
    main: str, argv: list[str], env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Call `main` ("package.module:function") with `argv` (and `env` added to the environment)
    in a new process. Its exit status is the command's own, or NO_TENSORFLOW_EXIT when TensorFlow
    was imported on the way."""
    module, function = main.split(":")
    code = (
        "import sys\n"
        f"from {module} import {function} as main\n"
        "try:\n"
        f"    status = main({argv!r})\n"
        "except SystemExit as stop:\n"
        "    status = stop.code\n"
        f"sys.exit({NO_TENSORFLOW_EXIT} if 'tensorflow' in sys.modules else status)\n"
    )
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=PROJECT,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
    )
