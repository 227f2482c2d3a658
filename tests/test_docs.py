"""The documentation: a short README, links that resolve, a model card that is current."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parent.parent
README = PROJECT / "README.md"
MODEL_CARD = PROJECT / "docs" / "model-card.md"
PAGES = [README, PROJECT / "CHANGELOG.md", *sorted((PROJECT / "docs").glob("*.md"))]
PAGES += sorted((PROJECT / "bench").glob("*.md"))
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def without_code(text: str) -> str:
    return re.sub(r"^```.*?^```", "", text, flags=re.MULTILINE | re.DOTALL)


def anchors(page: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens."""
    headings = re.findall(r"^#+ (.+)$", without_code(page.read_text()), re.MULTILINE)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}


def test_the_readme_stays_a_short_users_document() -> None:
    assert len(README.read_bytes()) < 15_000


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(PROJECT).as_posix())
def test_every_relative_link_resolves(page: Path) -> None:
    broken = []
    for target in LINK.findall(without_code(page.read_text())):
        if re.match(r"[a-z]+:", target):  # https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        linked = (page.parent / path).resolve() if path else page
        if not linked.exists() or (
            anchor and linked.suffix == ".md" and anchor not in anchors(linked)
        ):
            broken.append(target)
    assert not broken, broken


def test_the_model_card_page_is_current() -> None:
    """docs/model-card.md holds what `make card` writes for the version served by default."""
    from poster_genres.artifact import resolve_version_dir
    from training.card import END, START, model_card

    newest = resolve_version_dir(PROJECT / "model_store", "poster-genres", None)
    written = MODEL_CARD.read_text().split(START, 1)[1].split(END, 1)[0].strip()
    assert written == model_card(newest, page_dir=MODEL_CARD.parent).strip(), "run `make card`"
