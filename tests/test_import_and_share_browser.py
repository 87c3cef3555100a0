"""A person in Chromium: import a track from a link, watch it download and separate live, share it,
and a stranger with no account plays it, downloads a stem where allowed, and loses it on revoke."""

import pytest
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError
from playwright.sync_api import expect, sync_playwright

from tests.servers import Site
from tests.test_browser import CHROMIUM, CHROMIUM_FLAGS, SCREENSHOTS, log_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True), pytest.mark.database_agnostic]

# Records every status the job's block shows, and the highest download percent, without reloading.
WATCH_STATUSES = """
window.sameDocument = true;
window.statuses = [];
window.downloadPercents = [];
const note = () => {
  const block = document.querySelector(".job-status");
  if (!block) return;
  const status = block.dataset.status;
  if (window.statuses[window.statuses.length - 1] !== status) window.statuses.push(status);
  const percent = block.querySelector(".percent");
  if (status === "downloading" && percent) window.downloadPercents.push(parseInt(percent.textContent, 10));
};
note();
new MutationObserver(note).observe(document.body, {subtree: true, childList: true, attributes: true});
"""


@pytest.fixture
def site():
    server = Site()
    yield server
    server.close()


@pytest.fixture
def importing_env(process_env, site, tmp_path):
    """The site's processes may import from the local server, and from nothing else on this machine."""
    process_env.update(
        STEMSITE_TEST_FETCH_ALLOWED=site.address,
        STEMSITE_IMPORT_DIR=str(tmp_path / "imports"),
        STEMSITE_PROGRESS_INTERVAL="0.1",
    )
    return process_env


@pytest.fixture
def browser():
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM, args=[*CHROMIUM_FLAGS, "--autoplay-policy=no-user-gesture-required"]
        )
        yield chromium
        chromium.close()


def make_share_link(page, allow_downloads: bool) -> str:
    page.check("input[name=expires][value=week]")
    if allow_downloads:
        page.check("input[name=allow_downloads]")
    page.click(".share-create button[type=submit]")
    link = page.locator("[data-share-url]")
    expect(link).to_be_visible()
    return link.input_value()


def wait_until_playing(page) -> None:
    page.wait_for_function(
        "() => { const s = window.stemsiteMixer.state();"
        " return s && Object.values(s.loaded).every(Boolean); }",
        timeout=60_000,
    )
    page.click("[data-play]")
    page.wait_for_function("() => window.stemsiteMixer.state().time > 0.3", timeout=15_000)


@pytest.mark.slow
def test_import_from_a_link_then_share_it_with_someone_without_an_account(
    importing_env, site, owner, make_audio, live_site, browser
):
    audio = make_audio("So What.mp3", seconds=12).read_bytes()
    site.trickle("/So%20What.mp3", audio, chunk=16 * 1024, every=0.1)  # about two seconds of downloading
    context = browser.new_context(viewport={"width": 1100, "height": 900}, accept_downloads=True)
    page = context.new_page()
    log_in(page, live_site)

    page.fill("input[name=url]", site.url("/So%20What.mp3"))
    page.click("text=Upload and separate")
    expect(page.locator("h1.track")).to_have_text("So What.mp3")
    page.evaluate(WATCH_STATUSES)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=SCREENSHOTS / "import-downloading.png", full_page=True)
    status = page.locator(".job-status")
    expect(status).to_have_attribute("data-status", "succeeded", timeout=180_000)

    statuses = page.evaluate("window.statuses")
    assert statuses[0] == "downloading", statuses
    assert statuses[-1] == "succeeded", statuses
    assert "running" in statuses, statuses
    assert any(0 < percent < 100 for percent in page.evaluate("window.downloadPercents"))
    assert page.evaluate("window.sameDocument") is True, "the page updated in place"
    expect(page.locator("a.source")).to_have_attribute("href", site.url("/So%20What.mp3"))
    wait_until_playing(page)

    with_downloads = make_share_link(page, allow_downloads=True)
    page.reload()
    play_only = make_share_link(page, allow_downloads=False)
    page.screenshot(path=SCREENSHOTS / "share-links.png", full_page=True)

    stranger = browser.new_context(accept_downloads=True).new_page()
    stranger.goto(with_downloads)
    expect(stranger.locator("h1.track")).to_have_text("So What")
    expect(stranger.locator("body")).not_to_contain_text(owner.username)
    wait_until_playing(stranger)
    stranger.screenshot(path=SCREENSHOTS / "shared-player.png", full_page=True)
    with stranger.expect_download() as download:
        stranger.click(".stem[data-stem=vocals] a.download")
    assert download.value.suggested_filename == "So What - vocals.mp3"
    assert download.value.failure() is None

    stranger.goto(play_only)
    wait_until_playing(stranger)
    expect(stranger.locator("a.download")).to_have_count(0)
    # The practice controls work for a visitor, whose settings are never sent anywhere: the owner's
    # player saves 0.8 s after a change, so a visitor's would be on its way well within 3 s.
    stranger.eval_on_selector("[data-tempo]", "i => { i.value = '80'; i.dispatchEvent(new Event('input')); }")
    expect(stranger.locator("[data-practice-summary]")).to_contain_text("80%")
    with pytest.raises(PlaywrightTimeoutError):
        stranger.wait_for_event("request", lambda request: request.method == "POST", timeout=3000)
    refused = stranger.request.get(play_only + "stems/vocals/")
    assert refused.status == 404

    page.reload()
    page.locator(".share-links button.danger").first.click()
    expect(page.locator(".share-links button.danger")).to_have_count(1)
    gone = stranger.goto(play_only)
    assert gone.status == 404
    expect(stranger.locator("h1")).to_have_text("Not found")
    assert stranger.goto(with_downloads).status == 200, "the other link still opens"
