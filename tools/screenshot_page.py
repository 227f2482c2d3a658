"""Take the README's screenshots of the try-it page: a running service, one poster.

.venv/bin/python tools/screenshot_page.py http://127.0.0.1:8000 POSTER.jpg docs/page.png 1280
.venv/bin/python tools/screenshot_page.py http://127.0.0.1:8000 POSTER.jpg docs/page-390.png 390
"""

from __future__ import annotations

import shutil
import sys

from playwright.sync_api import sync_playwright


def main(url: str, poster: str, out: str, width: str = "1280") -> None:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=shutil.which("chromium"),
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        page = browser.new_page(viewport={"width": int(width), "height": 900})
        page.goto(url)
        page.get_by_label("Choose a poster").set_input_files(poster)
        page.wait_for_selector("#bars .bar")
        page.screenshot(path=out, full_page=True)
        browser.close()


if __name__ == "__main__":
    main(*sys.argv[1:5])
