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


# Where a model runtime may be imported: the runtime seam's own modules, Grad-CAM (it differentiates
# through the Keras model), the quiet TensorFlow import of the command-line processes, and training.
RUNTIME_IMPORTS = {
    "tensorflow": {
        "poster_genres/runtimes/keras_runtime.py", "poster_genres/explain.py",
        "poster_genres/cli.py",
    },
    "keras": {
        "poster_genres/runtimes/keras_runtime.py", "poster_genres/explain.py",
        "poster_genres/cli.py", "poster_genres/artifact.py",
    },
    "ai_edge_litert": {"poster_genres/runtimes/litert_runtime.py"},
}  # fmt: skip


@pytest.mark.parametrize("runtime", sorted(RUNTIME_IMPORTS))
def test_only_the_runtime_modules_import_a_runtime(runtime: str) -> None:
    importers = {
        file
        for package in ("poster_genres", "app", "scorer")
        for file, names in imported_top_level(package).items()
        if runtime in names
    }
    assert importers == RUNTIME_IMPORTS[runtime]


def test_the_readme_curls_show_their_errors() -> None:
    """`curl -s` alone hides a missing file (exit 26, no output); every example says -sS."""
    readme = (PROJECT / "README.md").read_text()
    commands = re.findall(r"curl( -[A-Za-z]+)*", readme)
    assert commands and all("S" in flags for flags in re.findall(r"curl -([A-Za-z]+)", readme))


def test_the_readme_documents_every_setting() -> None:
    from app.config import Settings

    section = (PROJECT / "README.md").read_text().split("## Configuration", 1)[1].split("\n## ")[0]
    documented = set(re.findall(r"`(POSTER_[A-Z_]+)`", section))
    assert documented == {f"POSTER_{name.upper()}" for name in Settings.model_fields}
