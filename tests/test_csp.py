"""The Content-Security-Policy: every page sends it, and no page breaks it, in Chromium as people use them."""

import pytest
from django.urls import reverse
from playwright.sync_api import expect

from jobs.sharing.links import create_link
from stemsite.security import bucket_origins
from stemsite.storage import storages_config
from tests.conftest import PASSWORD
from tests.test_browser import log_in
from tests.test_mixer import browser, finished_job, state, tone_files, wait_for  # noqa: F401 (fixtures)


def directives(header: str) -> dict[str, list[str]]:
    parsed = {}
    for part in header.split(";"):
        name, *values = part.split()
        parsed[name] = values
    return parsed


@pytest.mark.django_db
def test_every_kind_of_page_sends_the_policy(client, owner_client, owner, make_job, staff_client):
    job = make_job(owner)
    _, token = create_link(job, "week", allow_downloads=True, show_owner=False)
    pages = [
        (owner_client, reverse("job_list")),
        (owner_client, job.get_absolute_url()),
        (owner_client, reverse("account")),
        (client, reverse("login")),
        (client, f"/s/{token}/"),
        (client, "/no-such-page/"),
        (client, "/api/docs"),
        (staff_client, reverse("admin:index")),
    ]
    for user, url in pages:
        response = user.get(url)
        assert response.status_code in (200, 404), url
        policy = directives(response["Content-Security-Policy"])
        assert policy["script-src"] == ["'self'", "'wasm-unsafe-eval'"], url
        assert policy["style-src"] == ["'self'"], url
        assert policy["default-src"] == ["'self'"], url
        assert policy["frame-ancestors"] == ["'none'"], url
        assert policy["object-src"] == ["'none'"], url
        assert policy["media-src"] == ["'self'"], url
        assert policy["connect-src"] == ["'self'", "ws://testserver"], url
        assert "'unsafe-inline'" not in response["Content-Security-Policy"]
        assert "'unsafe-eval'" not in response["Content-Security-Policy"]


@pytest.mark.django_db
def test_only_the_queue_dashboard_keeps_inline_styles_and_no_page_inline_scripts(staff_client, owner_client):
    dashboard = directives(
        staff_client.get("/admin/django_rq/dashboard/queues/0/")["Content-Security-Policy"]
    )
    assert dashboard["style-src"] == ["'self'", "'unsafe-inline'"]
    assert dashboard["script-src"] == ["'self'", "'wasm-unsafe-eval'"]
    page = directives(owner_client.get(reverse("job_list"))["Content-Security-Policy"])
    assert page["style-src"] == ["'self'"]


@pytest.mark.django_db
def test_the_websocket_origin_follows_https(owner_client, settings):
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    response = owner_client.get(reverse("job_list"), HTTP_X_FORWARDED_PROTO="https", HTTP_HOST="testserver")
    assert "wss://testserver" in directives(response["Content-Security-Policy"])["connect-src"]


def origins(**storage) -> list[str]:
    return bucket_origins(storages_config(**storage)["default"])


def test_the_bucket_is_allowed_for_media_and_fetches_when_files_live_in_one():
    assert origins() == []
    aws = origins(bucket="stems", region="eu-west-1")
    assert aws == [
        "https://stems.s3.amazonaws.com",
        "https://stems.s3.eu-west-1.amazonaws.com",
        "https://s3.eu-west-1.amazonaws.com",
    ]
    assert origins(bucket="stems", endpoint_url="https://minio.example:9000") == [
        "https://minio.example:9000"
    ]
    virtual = origins(bucket="stems", endpoint_url="https://s3.example", addressing_style="virtual")
    assert virtual == ["https://stems.s3.example"]


# In Chromium: every page, as people use them, with nothing the policy blocks.

RECORD_VIOLATIONS = """
window.cspViolations = [];
document.addEventListener("securitypolicyviolation", (event) => {
  const where = `${event.sourceFile}:${event.lineNumber}`;
  window.cspViolations.push(`${event.violatedDirective} blocked ${event.blockedURI || "inline"} in ${where}`);
});
"""


def watched(context) -> list[str]:
    """Console messages about the policy, from every page of the context."""
    seen = []
    context.add_init_script(RECORD_VIOLATIONS)
    context.on(
        "console",
        lambda message: seen.append(message.text) if "Content Security Policy" in message.text else None,
    )
    return seen


def no_violations(page, console: list[str], where: str) -> None:
    page.wait_for_load_state("networkidle")
    reported = page.evaluate("window.cspViolations")
    assert reported == [], f"{where}: {reported}"
    assert console == [], f"{where}: {console}"


def log_in_as(page, base_url: str, username: str) -> None:
    page.goto(f"{base_url}/accounts/login/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base_url}/")


@pytest.fixture
def waiting_job(owner, make_job):
    return make_job(owner, status="queued", name="Waiting.wav")


@pytest.fixture
def share_token(finished_job) -> str:  # noqa: F811
    return create_link(finished_job, "week", allow_downloads=True, show_owner=True)[1]


@pytest.mark.slow
@pytest.mark.browser
@pytest.mark.database_agnostic
@pytest.mark.django_db(transaction=True)
def test_no_page_breaks_the_policy_in_a_browser(
    live_web, owner, staff, waiting_job, share_token,
    finished_job,  # noqa: F811
    browser,  # noqa: F811
):  # fmt: skip
    running, token = waiting_job, share_token
    context = browser.new_context(viewport={"width": 1100, "height": 900})
    console = watched(context)
    page = context.new_page()

    log_in(page, live_web)
    no_violations(page, console, "job list")
    page.goto(f"{live_web}{running.get_absolute_url()}")
    expect(page.locator(".job-status")).to_have_attribute("data-status", "queued")
    no_violations(page, console, "a queued job's page, with its socket")
    page.goto(f"{live_web}{finished_job.get_absolute_url()}")
    wait_for(page, lambda s: all(s["loaded"].values()), "every stem decoded")
    page.click("[data-play]")
    wait_for(page, lambda s: s["playing"] and s["time"] > 0.3, "the player playing")
    page.click(".share-create button[type=submit]")
    expect(page.locator("[data-share-url]")).to_be_visible()
    no_violations(page, console, "the player playing, and a share link made")
    page.goto(f"{live_web}{reverse('account')}")
    no_violations(page, console, "account")
    page.goto(f"{live_web}/api/docs")
    expect(page.locator(".swagger-ui .info")).to_be_visible(timeout=15_000)
    no_violations(page, console, "API docs")

    staff_context = browser.new_context()
    staff_console = watched(staff_context)
    admin = staff_context.new_page()
    log_in_as(admin, live_web, "staff")
    for url in (
        reverse("admin:index"),
        reverse("admin:jobs_job_changelist"),
        reverse("admin:jobs_job_change", args=[finished_job.pk]),
        reverse("admin:jobs_sharelink_changelist"),
        reverse("admin:auth_user_changelist"),
        "/admin/django_rq/dashboard/",
        "/admin/django_rq/dashboard/queues/0/",
        "/admin/django_rq/dashboard/queues/0/finished/",
        "/admin/django_rq/dashboard/workers/0/",
    ):
        admin.goto(f"{live_web}{url}")
        no_violations(admin, staff_console, url)

    stranger_context = browser.new_context()
    stranger_console = watched(stranger_context)
    stranger = stranger_context.new_page()
    stranger.goto(f"{live_web}/s/{token}/")
    wait_for(stranger, lambda s: all(s["loaded"].values()), "every shared stem decoded")
    stranger.click("[data-play]")
    wait_for(stranger, lambda s: s["playing"] and s["time"] > 0.3, "the shared player playing")
    no_violations(stranger, stranger_console, "a share page, playing")
    assert state(stranger)["playing"]
