"""`python -m app`: serve poster-genres over HTTP (app/server.py).

Everything is imported inside `main`, under `run_command`, so that Ctrl+C at any moment of the
start-up, even while uvicorn or TensorFlow is being imported, ends in one line and status 130.
"""

from __future__ import annotations

from typing import NoReturn

from poster_genres.cli import run_command


def main(argv: list[str] | None = None) -> int:
    """Run the service until a shutdown signal; the exit status."""
    from app.server import main as serve

    return serve(argv)


def run() -> NoReturn:
    """The `poster-genres-serve` command: `python -m app`."""
    run_command(main)


if __name__ == "__main__":
    run()
