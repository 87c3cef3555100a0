"""A person in Chromium: log in, upload, watch the job finish live, play and download stems."""

import os
from pathlib import Path

import pytest
from playwright.sync_api import expect, sync_playwright

from tests.conftest import PASSWORD, ROOT

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True), pytest.mark.database_agnostic]

CHROMIUM = os.environ.get("STEMSITE_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
SCREENSHOTS = Path(os.environ.get("STEMSITE_SCREENSHOTS", ROOT / "var" / "screenshots"))
# Marks the document (a reload would lose the mark) and records the highest progress shown.
WATCH_PROGRESS = """
window.sameDocument = true;
window.maxProgress = 0;
new MutationObserver(() => {
  const bar = document.querySelector(".job-progress");
  if (bar) window.maxProgress = Math.max(window.maxProgress, Number(bar.value));
}).observe(document.body, {subtree: true, childList: true, attributes: true});
"""


@pytest.fixture
def page():
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        context = browser.new_context(viewport={"width": 1100, "height": 900}, accept_downloads=True)
        yield context.new_page()
        browser.close()


def log_in(page, base_url):
    page.goto(f"{base_url}/accounts/login/")
    page.fill("input[name=username]", "owner")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    expect(page.locator("h1")).to_have_text("Split a song into stems")


@pytest.mark.slow
def test_upload_and_watch_the_job_succeed_without_reloading(live_site, owner, page, make_audio, tmp_path):
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    log_in(page, live_site)

    sockets = []
    page.on("websocket", lambda socket: sockets.append(socket.url))
    page.set_input_files("input[type=file]", str(make_audio("Blue in Green.mp3", seconds=15)))
    page.click("text=Upload and separate")
    expect(page.locator("h1.track")).to_have_text("Blue in Green.mp3")
    page.evaluate(WATCH_PROGRESS)

    status = page.locator(".job-status")
    expect(status).to_have_attribute("data-status", "running", timeout=60_000)
    page.screenshot(path=SCREENSHOTS / "job-running.png", full_page=True)
    expect(status).to_have_attribute("data-status", "succeeded", timeout=120_000)
    assert page.evaluate("window.sameDocument") is True, "the page updated in place, without a reload"
    assert 0 < page.evaluate("window.maxProgress") < 100, "the progress bar moved while the job ran"
    job_sockets = [url for url in sockets if "/ws/jobs/" in url and not url.endswith("/ws/jobs/")]
    assert len(job_sockets) == 1, f"the job page kept one socket through every push: {len(job_sockets)}"

    stems = page.locator(".stem")
    expect(stems).to_have_count(4)
    expect(page.locator(".stem-name")).to_have_text(["drums", "bass", "other", "vocals"])
    # The player arrived with the pushed status block and decodes every stem.
    page.wait_for_function(
        "() => { const s = window.stemsiteMixer.state();"
        " return s && Object.values(s.loaded).every(Boolean) && Object.keys(s.loaded).length === 4; }",
        timeout=60_000,
    )
    assert page.evaluate("window.stemsiteMixer.state().duration") == pytest.approx(15, abs=0.2)
    page.screenshot(path=SCREENSHOTS / "job-succeeded.png", full_page=True)

    with page.expect_download() as download:
        page.click(".stem:has-text('vocals') a.download")
    assert download.value.suggested_filename == "Blue in Green - vocals.mp3"

    page.click("text=My tracks")
    row = page.locator("table.jobs tbody tr").first
    expect(row).to_have_attribute("data-status", "succeeded")
    page.screenshot(path=SCREENSHOTS / "job-list.png", full_page=True)


def test_bad_file_shows_an_error_in_the_form(live_web, owner, page, tmp_path):
    log_in(page, live_web)
    fake = tmp_path / "lyrics.mp3"
    fake.write_text("not a song at all\n" * 20)
    page.set_input_files("input[type=file]", str(fake))
    page.click("text=Upload and separate")
    expect(page.locator("#upload-form .error")).to_contain_text("not audio we can read")
    expect(page.locator("h1")).to_have_text("Split a song into stems")
