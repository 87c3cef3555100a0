"""The open job list takes in jobs made elsewhere (another tab, a script on the API) as they arrive.

Before, a pushed row for a job the page had not listed had nowhere to go, so a list left open
stayed "No tracks yet" while a script's jobs ran and finished.
"""

from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connection
from django.urls import reverse
from playwright.sync_api import expect

from jobs.models import Job
from tests.test_browser import log_in, page  # noqa: F401 - the Chromium page fixture

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True), pytest.mark.database_agnostic]

PER_PAGE = 2


SHOWN_WITHIN_MS = 15_000


@pytest.fixture
def process_env(process_env):
    """Two rows a page, so a later page is quick to reach; the socket's own look at the database
    comes far later than SHOWN_WITHIN_MS, so what shows a new job in time is its push."""
    return {**process_env, "STEMSITE_JOBS_PER_PAGE": str(PER_PAGE), "STEMSITE_SOCKET_RESYNC_SECONDS": "120"}


def open_list(tab, url: str) -> list:
    """Open the list and wait for its socket to open (the server joins it to the owner's pushes
    first); returns the frames the socket receives from then on."""
    tab.add_init_script("document.addEventListener('htmx:wsOpen', () => { window.listSocketOpen = true; })")
    with tab.expect_websocket() as opened:
        tab.goto(url)
    frames = []
    opened.value.on("framereceived", lambda frame: frames.append(frame))
    tab.wait_for_function("() => window.listSocketOpen === true")
    return frames


def wait_for(tab, condition, what: str, timeout_ms: int = 10_000) -> None:
    for _ in range(timeout_ms // 50):
        if condition():
            return
        tab.wait_for_timeout(50)
    raise AssertionError(f"{what}: never happened")


def upload_elsewhere(client, make_audio, name: str, seconds: float) -> Job:
    """Upload as another tab would, from a thread: Playwright runs an event loop in this one, where
    Django refuses database calls."""

    def post() -> Job:
        with make_audio(name, seconds=seconds).open("rb") as handle:
            response = client.post(reverse("job_create"), {"files": handle})
        assert response.status_code == 302, response.content.decode()[:300]
        job = Job.objects.get(original_name=name)
        connection.close()
        return job

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(post).result()


def shown_rows(tab) -> list[str]:
    return tab.locator("table.jobs tbody tr").evaluate_all("rows => rows.map(row => row.id)")


@pytest.fixture
def three_jobs(owner, make_job) -> list[Job]:
    """Oldest first; made before the page opens."""
    return [make_job(owner, name=f"{name}.wav") for name in ("oldest", "middle", "newest")]


def test_jobs_uploaded_elsewhere_appear_on_the_open_list_newest_first(
    live_web,
    owner_client,
    make_audio,
    page,  # noqa: F811
):
    log_in(page, live_web)
    open_list(page, f"{live_web}/")
    expect(page.locator(".empty")).to_be_visible()

    first = upload_elsewhere(owner_client, make_audio, "first.wav", 1)
    first_row = page.locator(f"#job-{first.pk}-row")
    expect(first_row).to_have_attribute("data-status", "queued", timeout=SHOWN_WITHIN_MS)
    expect(page.locator(".empty")).to_be_hidden()
    second = upload_elsewhere(owner_client, make_audio, "second.wav", 2)
    expect(page.locator(f"#job-{second.pk}-row")).to_be_visible(timeout=SHOWN_WITHIN_MS)

    assert shown_rows(page) == [f"job-{second.pk}-row", f"job-{first.pk}-row"]


def test_rows_of_later_pages_stay_off_the_first_page_and_later_pages_take_in_nothing(
    live_web,
    owner_client,
    make_audio,
    three_jobs,
    page,  # noqa: F811
):
    oldest, middle, newest = three_jobs
    log_in(page, live_web)
    open_list(page, f"{live_web}/")  # its first state lists all three; the oldest must stay off
    assert shown_rows(page) == [f"job-{newest.pk}-row", f"job-{middle.pk}-row"]
    later = page.context.new_page()
    later_frames = open_list(later, f"{live_web}/?page=2")
    assert shown_rows(later) == [f"job-{oldest.pk}-row"]

    fresh = upload_elsewhere(owner_client, make_audio, "fresh.wav", 1)

    expect(page.locator(f"#job-{fresh.pk}-row")).to_be_visible(timeout=SHOWN_WITHIN_MS)
    assert shown_rows(page) == [f"job-{fresh.pk}-row", f"job-{newest.pk}-row", f"job-{middle.pk}-row"]
    wait_for(
        later, lambda: any(f"job-{fresh.pk}-row" in str(frame) for frame in later_frames), "push on page 2"
    )
    assert shown_rows(later) == [f"job-{oldest.pk}-row"]
