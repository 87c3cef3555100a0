"""Take the README's screenshots again from a running demo site, so they never go stale.

    make run DEMO=1                                   # in one terminal
    .venv/bin/python docs/screenshots.py              # in another; --url for another address

It signs up a fresh user, uploads two generated tracks and photographs the job list while the
longer one is being separated (docs/images/job-list.png), then the finished one's page with the
player loaded (docs/images/player.png). Chromium is Debian's (`/usr/bin/chromium`, or
STEMSITE_CHROMIUM), driven by Playwright like the browser tests.
"""

import argparse
import os
import secrets
import sys
import tempfile
from pathlib import Path

from playwright.sync_api import expect, sync_playwright

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
from separation import make_input  # noqa: E402 (the benchmark's deterministic mix)

IMAGES = ROOT / "docs" / "images"
CHROMIUM = os.environ.get("STEMSITE_CHROMIUM", "/usr/bin/chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--no-first-run"]  # fmt: skip
PLAYER_LOADED = (
    "() => { const s = window.stemsiteMixer && window.stemsiteMixer.state();"
    " return s && Object.values(s.loaded).length > 0 && Object.values(s.loaded).every(Boolean); }"
)


def sign_up(page, url: str) -> None:
    page.goto(f"{url}/accounts/signup/")
    page.fill("input[name=username]", f"demo-{secrets.token_hex(3)}")
    password = secrets.token_urlsafe(16)
    page.fill("input[name=password1]", password)
    page.fill("input[name=password2]", password)
    page.click("button[type=submit]")
    expect(page.locator("#upload-form")).to_be_visible()


def upload(page, url: str, path: Path) -> None:
    page.goto(f"{url}/")
    page.set_input_files("#upload-form input[type=file]", str(path))
    page.click("text=Upload and separate")
    expect(page.locator("h1.track")).to_have_text(path.name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    args = parser.parse_args()
    url = args.url.rstrip("/")
    IMAGES.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as work, sync_playwright() as playwright:
        short = make_input(Path(work) / "Autumn Leaves.wav", 20, seed=3)
        long = make_input(Path(work) / "So What.wav", 240, seed=5)
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        page = browser.new_page(viewport={"width": 1100, "height": 1000})
        sign_up(page, url)
        upload(page, url, short)
        finished = page.url
        expect(page.locator(".job-status")).to_have_attribute("data-status", "succeeded", timeout=300_000)
        upload(page, url, long)
        expect(page.locator(".job-status")).to_have_attribute("data-status", "running", timeout=300_000)
        page.goto(f"{url}/")
        expect(page.locator("tr[data-status=running]")).to_have_count(1)
        page.screenshot(path=IMAGES / "job-list.png")
        page.goto(finished)
        page.wait_for_function(PLAYER_LOADED, timeout=60_000)
        page.screenshot(path=IMAGES / "player.png", full_page=True)
        browser.close()
    print(f"wrote {IMAGES / 'job-list.png'} and {IMAGES / 'player.png'}")


if __name__ == "__main__":
    main()
