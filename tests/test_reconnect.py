"""A page open while the web server restarts: its socket reconnects by itself and shows the current state."""

import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from django.db import connection
from playwright.sync_api import expect

from jobs.models import Job
from tests.conftest import ROOT, free_port, wait_for_port
from tests.test_browser import log_in, page  # noqa: F401 - the Chromium page fixture

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

COUNT_SOCKET_OPENS = "window.sameDocument = true; window.socketOpens = 0;"
COUNT_SOCKET_OPENS += "document.addEventListener('htmx:wsOpen', () => window.socketOpens++);"


class WebServer:
    """daphne on a fixed port, stopped and started again like a deploy would."""

    def __init__(self, env: dict, log: Path):
        self.env, self.log, self.port, self.process = env, log, free_port(), None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        daphne = str(Path(sys.executable).parent / "daphne")
        with self.log.open("a") as log:
            self.process = subprocess.Popen(
                [daphne, "-b", "127.0.0.1", "-p", str(self.port), "stemsite.asgi:application"],
                cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        wait_for_port(self.port, self.process)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


@pytest.fixture
def web_server(process_env, tmp_path):
    server = WebServer(process_env, tmp_path / "web.log")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def running_job(owner, make_job) -> Job:
    """Made before the page: Playwright runs an event loop, where Django refuses database calls."""
    return make_job(owner, status="running", progress=10)


def set_progress_unpublished(job: Job, percent: int) -> None:
    def update():
        Job.objects.filter(pk=job.pk).update(progress=percent)
        connection.close()

    with ThreadPoolExecutor(1) as pool:
        pool.submit(update).result()


def test_job_page_reconnects_after_a_server_restart_and_catches_up(
    web_server,
    running_job,
    page,  # noqa: F811
):
    job = running_job
    log_in(page, web_server.url)
    page.add_init_script(COUNT_SOCKET_OPENS)
    page.goto(f"{web_server.url}{job.get_absolute_url()}")
    expect(page.locator(".percent")).to_have_text("10%")
    page.wait_for_function("() => window.socketOpens >= 1")

    web_server.stop()
    set_progress_unpublished(job, 60)  # while nobody could push it
    web_server.start()

    expect(page.locator(".percent")).to_have_text("60%", timeout=60_000)
    assert page.evaluate("window.socketOpens") >= 2
    assert page.evaluate("window.sameDocument") is True, "caught up in place, without a reload"
