"""The try-it page in a real browser: headless Chromium (Debian's) driven by Playwright.

Skips locally, saying why, when Chromium or Playwright is missing; fails instead under CI=true.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import IN_CI, poster_bytes
from tests.service_process import running_service

pytestmark = pytest.mark.slow
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def prerequisite(ok: bool, why: str) -> None:
    if not ok:
        if IN_CI:
            pytest.fail(f"{why} (required when CI=true)")
        pytest.skip(why)


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    prerequisite(chromium is not None, "Chromium is not installed (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        prerequisite(False, "Playwright for Python is not installed")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=chromium, headless=True, args=CHROMIUM_FLAGS
        )
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def service(tiny_store: Path) -> Iterator[str]:
    with running_service(tiny_store) as running:
        yield running.url


def test_uploaded_poster_shows_the_api_numbers(browser, service: str, tmp_path: Path) -> None:
    poster = tmp_path / "poster.png"
    poster.write_bytes(poster_bytes((200, 30, 30), size=(120, 180), fmt="PNG", square=True))
    api = httpx.post(f"{service}/predict", files={"file": ("poster.png", poster.read_bytes())})
    expected = {p["genre"]: p["probability"] for p in api.json()["probabilities"]}
    predicted = {p["genre"] for p in api.json()["predicted"]}
    genres = httpx.get(f"{service}/genres").json()["genres"]
    predictable = {g["genre"] for g in genres if g["predictable"]}
    assert predictable != {g["genre"] for g in genres}  # N/A at least: a genre with no mark

    page = browser.new_page(viewport={"width": 390, "height": 844})  # a phone-sized screen
    page.goto(service)
    page.get_by_label("Choose a poster").set_input_files(str(poster))
    page.wait_for_selector("#bars .bar")
    bars = page.locator("#bars .bar")
    assert bars.count() == len(expected)
    shown = {}
    for i in range(bars.count()):
        bar = bars.nth(i)
        genre = bar.get_attribute("data-genre")
        shown[genre] = float(bar.get_attribute("data-probability"))
        assert bar.locator(".bar-value").inner_text() == f"{expected[genre] * 100:.1f}%"
        assert ("is-predicted" in bar.get_attribute("class")) == (genre in predicted)
        # A threshold mark only for a genre the rule can predict.
        assert bar.locator(".bar-threshold").count() == (genre in predictable)
    assert shown == pytest.approx(expected, abs=1e-6)
    values = list(shown.values())
    assert values == sorted(values, reverse=True)
    assert "tiny" in page.locator("#model-version").inner_text()
    assert "never predicts" in page.locator("#legend-unmarked").inner_text()
    assert (
        page.get_by_role("link", name="the API and its documentation").get_attribute("href")
        == "/docs"
    )
    assert page.locator("#preview").get_attribute("src").startswith("blob:")
    page.close()


def test_clicking_a_genre_toggles_its_heatmap_over_the_poster(
    browser, service: str, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    poster = tmp_path / "poster.png"
    poster.write_bytes(poster_bytes((30, 90, 200), size=(120, 180), fmt="PNG"))
    api = httpx.post(
        f"{service}/explain",
        params={"genre": "Comedy"},
        files={"file": ("p.png", poster.read_bytes())},
    ).json()
    page = browser.new_page(viewport={"width": 390, "height": 844})
    page.goto(service)
    page.get_by_label("Choose a poster").set_input_files(str(poster))
    page.wait_for_selector("#bars .bar")
    preview = page.locator("#preview")
    caption = page.locator("#heatmap-caption")
    assert preview.get_attribute("src").startswith("blob:") and caption.is_hidden()

    comedy = page.get_by_role("button", name="Comedy", exact=True)
    comedy.click()
    # (the page's CSP forbids eval, so waits go through locators, not wait_for_function)
    expect(preview).to_have_attribute("src", re.compile(r"^data:image/png;base64,"))
    assert preview.get_attribute("src") == "data:image/png;base64," + api["overlay_png"]
    assert comedy.get_attribute("aria-pressed") == "true"
    assert caption.is_visible()
    text = caption.inner_text()
    assert text.startswith(f"Comedy {api['probability'] * 100:.1f}%")
    assert "where the model looked, not whether it is right" in text
    assert "highlighted" in preview.get_attribute("alt")
    assert [api["overlay_width"], api["overlay_height"]] == [120, 180]

    page.get_by_role("button", name="Drama", exact=True).click()  # another genre replaces it
    expect(page.locator(".bar-name[aria-pressed=true]")).to_have_text("Drama")
    assert comedy.get_attribute("aria-pressed") == "false"
    assert caption.inner_text().startswith("Drama ")

    page.get_by_role("button", name="Drama", exact=True).click()  # and a second click hides it
    expect(preview).to_have_attribute("src", re.compile(r"^blob:"))
    assert caption.is_hidden()
    assert page.locator(".bar-name[aria-pressed=true]").count() == 0
    page.close()


def test_non_image_upload_shows_a_readable_error(browser, service: str, tmp_path: Path) -> None:
    fake = tmp_path / "notes.jpg"
    fake.write_text("these are not pixels")
    page = browser.new_page()
    page.goto(service)
    page.get_by_label("Choose a poster").set_input_files(str(fake))
    message = page.locator("#message.error")
    message.wait_for()
    assert "not a poster image we can read" in message.inner_text()
    assert page.locator("#result").is_hidden()
    page.close()


def test_page_needs_no_external_resources(service: str) -> None:
    html = httpx.get(service).text
    assert "http://" not in html and "https://" not in html
    for asset in ("/static/page.css", "/static/page.js"):
        assert httpx.get(service + asset).status_code == 200


def offline_context(browser: object) -> tuple[object, list[str]]:
    """A browser context whose requests may only reach this machine; the rest are recorded."""
    from urllib.parse import urlparse

    context = browser.new_context()  # type: ignore[attr-defined]  # a Playwright Browser
    outside: list[str] = []

    def only_local(route: object) -> None:
        url = route.request.url  # type: ignore[attr-defined]  # a Playwright Route
        if urlparse(url).hostname in ("127.0.0.1", "localhost"):
            route.continue_()  # type: ignore[attr-defined]  # as above
        else:
            outside.append(url)
            route.abort()  # type: ignore[attr-defined]  # as above

    context.route("**/*", only_local)  # type: ignore[attr-defined]  # as above
    return context, outside


def csp_violations(page: object) -> list[str]:
    """Console messages of requests or scripts the Content-Security-Policy refused."""
    refused: list[str] = []
    page.on(  # type: ignore[attr-defined]  # a Playwright Page
        "console",
        lambda m: refused.append(m.text) if "Content Security Policy" in m.text else None,
    )
    return refused


def test_api_docs_render_with_the_network_blocked(browser, service: str) -> None:
    context, outside = offline_context(browser)
    page = context.new_page()
    refused = csp_violations(page)
    page.goto(f"{service}/docs")
    page.locator(".swagger-ui .opblock-summary-path[data-path='/predict']").wait_for(timeout=30_000)
    assert page.locator(".swagger-ui .info .title").inner_text().startswith("poster-genres")
    assert outside == []
    page.goto(f"{service}/redoc")
    page.get_by_text("Genre probabilities for one poster", exact=False).first.wait_for(
        timeout=30_000
    )
    # ReDoc's bundle asks its vendor's CDN for the small "powered by" logo in its footer, and
    # renders without it; nothing else leaves the machine.
    assert [url for url in outside if "cdn.redoc.ly/redoc/logo-mini.svg" not in url] == []
    # ReDoc's CDN logo is refused by the policy too (img-src 'self'); nothing else is.
    assert [r for r in refused if "logo-mini.svg" not in r] == []
    context.close()


def test_the_page_loads_everything_it_asks_for_including_a_favicon(browser, service: str) -> None:
    context, outside = offline_context(browser)
    page = context.new_page()
    refused = csp_violations(page)
    failed: list[str] = []
    page.on("response", lambda r: failed.append(r.url) if r.status >= 400 else None)
    page.goto(service)
    page.wait_for_load_state("networkidle")
    assert failed == [] and outside == [] and refused == []
    assert (
        httpx.get(f"{service}/static/favicon.svg")
        .headers["content-type"]
        .startswith("image/svg+xml")
    )
    context.close()


@pytest.fixture(scope="module")
def shipped_service() -> Iterator[str]:
    """The committed model: its 25 real genre names, 'Documentary' the longest."""
    with running_service(Path(__file__).resolve().parents[1] / "model_store") as running:
        yield running.url


@pytest.mark.parametrize("width", [360, 390, 1280])
def test_the_page_explains_itself_and_fits_the_screen(
    browser, shipped_service: str, tmp_path: Path, width: int
) -> None:
    service = shipped_service
    poster = tmp_path / "poster.png"
    poster.write_bytes(poster_bytes((30, 60, 200), size=(120, 180), fmt="PNG", square=True))
    page = browser.new_page(viewport={"width": width, "height": 800})
    page.goto(service)
    page.get_by_label("Choose a poster").set_input_files(str(poster))
    page.wait_for_selector("#bars .bar")
    assert page.locator("#bars .bar").count() == 25
    explain = page.locator("#explain").inner_text()
    rule = httpx.get(f"{service}/genres").json()["rule"]
    assert rule["summary"] in explain and "10%" in rule["summary"]  # the served version's rule
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0
    for i in range(page.locator("#bars .bar").count()):
        bar = page.locator("#bars .bar").nth(i)
        name = bar.locator(".bar-name").bounding_box()
        track = bar.locator(".bar-track").bounding_box()
        assert name["x"] + name["width"] <= track["x"] + 0.5, bar.get_attribute("data-genre")
        # The whole genre name is readable, not cut by an ellipsis.
        assert bar.locator(".bar-name").evaluate("e => e.scrollWidth <= e.clientWidth")
    page.close()


def test_the_api_key_prompt_points_at_the_field(tiny_store: Path, browser, tmp_path: Path) -> None:
    with running_service(tiny_store, {"POSTER_API_KEY": "a-long-enough-test-key"}) as running:
        poster = tmp_path / "poster.png"
        poster.write_bytes(poster_bytes(fmt="PNG"))
        page = browser.new_page()
        page.goto(running.url)
        page.get_by_label("Choose a poster").set_input_files(str(poster))
        page.locator("#message.error").wait_for()
        assert "field above" in page.locator("#message").inner_text()
        key_field = page.get_by_label("API key")
        assert key_field.is_visible()
        assert key_field.bounding_box()["y"] < page.locator("#message").bounding_box()["y"]
        key_field.fill("a-long-enough-test-key")
        page.get_by_role("button", name="Use key").click()
        page.wait_for_selector("#bars .bar")
        page.close()


def test_the_page_offers_a_version_picker_when_several_are_served(
    two_version_store: Path, browser, tmp_path: Path
) -> None:
    env = {"POSTER_MODEL_VERSION": "tiny", "POSTER_MODEL_VERSIONS": "tiny-b"}
    with running_service(two_version_store, env) as running:
        poster = tmp_path / "poster.png"
        poster.write_bytes(poster_bytes((200, 30, 30), size=(120, 180), fmt="PNG"))
        api = httpx.post(
            f"{running.url}/predict?version=tiny-b",
            files={"file": ("poster.png", poster.read_bytes())},
        ).json()
        page = browser.new_page()
        page.goto(running.url)
        picker = page.get_by_label("Model version")
        picker.wait_for()
        assert page.locator("#version option").all_inner_texts() == ["tiny (default)", "tiny-b"]
        picker.select_option("tiny-b")
        page.get_by_label("Choose a poster").set_input_files(str(poster))
        page.wait_for_selector("#bars .bar")
        page.wait_for_function(
            "document.querySelector('#model-version').innerText.includes('tiny-b')"
        )
        predicted = page.locator("#bars .bar.is-predicted")
        assert predicted.count() == len(api["predicted"])
        page.close()


def test_the_page_has_no_version_picker_for_one_version(browser, service: str) -> None:
    page = browser.new_page()
    page.goto(service)
    page.wait_for_load_state("networkidle")
    assert page.locator("#version-row").is_hidden()
    page.close()
