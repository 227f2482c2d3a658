"""The house rules: the core knows nothing of HTTP or training; app and training never meet."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parents[1]


def imported_top_level(package: str) -> dict[str, set[str]]:
    """Top-level module names each file of a package imports (at any depth in the file)."""
    found: dict[str, set[str]] = {}
    for path in (PROJECT / package).rglob("*.py"):
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module.split(".")[0])
        found[str(path.relative_to(PROJECT))] = names
    return found


@pytest.mark.parametrize(
    ("package", "forbidden"),
    [
        (
            "poster_genres",
            {"app", "training", "scorer", "fastapi", "starlette", "uvicorn", "argparse"},
        ),
        ("app", {"training", "scorer"}),
        ("training", {"app", "fastapi", "starlette", "uvicorn"}),
        ("scorer", {"app", "training", "fastapi"}),
    ],
)
def test_imports_only_point_down(package: str, forbidden: set[str]) -> None:
    offenders = {
        file: sorted(names & forbidden)
        for file, names in imported_top_level(package).items()
        if names & forbidden
    }
    assert offenders == {}


MARKER = "# type" + ": ignore"  # split, so this file does not match itself
IGNORE_WITH_REASON = re.compile(re.escape(MARKER) + r"(\[[a-z, -]+\])?\s+#\s*\S")


def test_no_type_ignore_without_a_reason() -> None:
    bare = []
    for package in ("poster_genres", "app", "training", "scorer", "tests", "bench", "tools"):
        for path in (PROJECT / package).rglob("*.py"):
            for number, line in enumerate(path.read_text().splitlines(), 1):
                if MARKER in line and not IGNORE_WITH_REASON.search(line):
                    bare.append(f"{path.relative_to(PROJECT)}:{number}")
    assert bare == [], "each type-ignore needs a reason comment after it"
