"""Which files to score and where to write: plain Python, so the CLI can check its arguments
before TensorFlow is imported."""

from __future__ import annotations

from pathlib import Path
from typing import IO

# What the service decodes, and image formats it refuses: both get a row (the latter an error).
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".gif"}
REFUSED_SUFFIXES = {".bmp", ".tif", ".tiff", ".psd", ".ico", ".heic", ".heif", ".avif", ".jp2"}
OUTPUT_FORMATS = {".csv": "CSV", ".jsonl": "JSON lines"}


def posters_in(folder: Path) -> tuple[list[Path], int]:
    """Image files under `folder` (recursively, sorted), and how many other files were passed over."""
    files = sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))
    wanted = IMAGE_SUFFIXES | REFUSED_SUFFIXES
    posters = [p for p in files if p.suffix.lower() in wanted]
    return posters, len(files) - len(posters)


def posters_listed(lines: IO[str]) -> list[Path]:
    """One path per line; blank lines and lines starting with # are skipped."""
    return [Path(s) for s in (line.strip() for line in lines) if s and not s.startswith("#")]
