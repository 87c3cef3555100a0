"""Webhooks: a finished job's event reaches a real local HTTP server, signed, and is retried on failure."""

import hashlib
import hmac
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import django_rq
import pytest
from django.conf import settings
from django.test import override_settings
from django.urls import reverse

from jobs.background.tasks import enqueue_separation
from jobs.control import cancel_job
from jobs.models import WebhookDelivery
from jobs.webhooks import check_callback_url, secret_for
from tests.test_faults import supervisor  # noqa: F401 (a fixture)
from tests.test_worker import wait_until

pytestmark = pytest.mark.django_db(transaction=True)

ALLOW_LOCAL = {"STEMSITE_WEBHOOK_ALLOWED_HOSTS": "127.0.0.1"}


class Receiver:
    """An HTTP server on 127.0.0.1 that records every POST and answers the next queued status."""

    def __init__(self, statuses=()):
        self.requests = []
        self.statuses = list(statuses)
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.requests.append((dict(self.headers), body))
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    made = []

    def make(statuses=()):
        made.append(Receiver(statuses))
        return made[-1]

    yield make
    for server in made:
        server.close()


def verify(secret: str, headers, body: bytes, tolerance: int = 300) -> bool:
    """The README's verification recipe, as a receiver would run it."""
    timestamp = headers["X-Stemsite-Timestamp"]
    if abs(time.time() - int(timestamp)) > tolerance:
        return False
    expected = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest("sha256=" + expected, headers["X-Stemsite-Signature"])


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:9000/hook",
        "http://localhost/hook",
        "http://10.1.2.3/hook",
        "http://192.168.0.10/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]/hook",
        "http://[::ffff:127.0.0.1]/hook",
        "http://[fe80::1]/hook",
        "http://0.0.0.0/hook",
        "http://224.0.0.1/hook",
        "ftp://93.184.216.34/hook",
        "file:///etc/passwd",
        "http:///no-host",
    ],
)
@override_settings(STEMSITE_WEBHOOK_ALLOW_PRIVATE=False, STEMSITE_WEBHOOK_ALLOWED_HOSTS=[])
def test_callback_urls_to_private_addresses_or_other_schemes_are_refused(url):
    with pytest.raises(ValueError, match=r"^The callback URL.*\.$"):
        check_callback_url(url)


@override_settings(STEMSITE_WEBHOOK_ALLOW_PRIVATE=False, STEMSITE_WEBHOOK_ALLOWED_HOSTS=[])
def test_callback_url_to_a_public_address_is_accepted():
    check_callback_url("https://93.184.216.34:8443/hook?x=1")


def test_settings_allow_loopback_by_host_or_everywhere():
    listed = override_settings(
        STEMSITE_WEBHOOK_ALLOW_PRIVATE=False, STEMSITE_WEBHOOK_ALLOWED_HOSTS=["127.0.0.1"]
    )
    with listed:
        check_callback_url("http://127.0.0.1:9000/hook")
        with pytest.raises(ValueError, match="10.1.2.3"):
            check_callback_url("http://10.1.2.3/hook")
    with override_settings(STEMSITE_WEBHOOK_ALLOW_PRIVATE=True, STEMSITE_WEBHOOK_ALLOWED_HOSTS=[]):
        check_callback_url("http://10.1.2.3/hook")


def test_canceled_job_event_reaches_the_receiver_signed(owner, make_job, receiver, run_worker):
    server = receiver()
    job = make_job(owner, status="queued", callback_url=server.url)

    assert cancel_job(job)
    result = run_worker(ALLOW_LOCAL)

    assert result.returncode == 0, result.stderr
    assert len(server.requests) == 1
    headers, body = server.requests[0]
    assert verify(secret_for(owner).secret, headers, body)
    assert not verify("another-secret", headers, body)
    assert headers["X-Stemsite-Event"] == "job.canceled"
    event = json.loads(body)
    assert event["event"] == "job.canceled"
    assert event["job"]["id"] == str(job.pk)
    assert event["job"]["status"] == "canceled"
    delivery = WebhookDelivery.objects.get(job=job)
    assert (delivery.succeeded, delivery.status_code, delivery.attempt) == (True, 200, 1)
    assert delivery.event == "job.canceled"
    assert delivery.url == server.url


def test_delivery_travels_on_the_short_queue_and_its_worker_sends_it(owner, make_job, receiver, run_worker):
    server = receiver()
    job = make_job(owner, status="queued", callback_url=server.url)

    cancel_job(job)

    short = django_rq.get_queue(settings.STEMSITE_SHORT_QUEUE)
    assert [rq.func_name for rq in short.get_jobs()] == ["jobs.webhooks.deliver_event"]
    assert django_rq.get_queue(settings.STEMSITE_QUEUE).count == 0
    result = run_worker(ALLOW_LOCAL, queues=[settings.STEMSITE_SHORT_QUEUE])
    assert result.returncode == 0, result.stderr
    assert len(server.requests) == 1
    assert WebhookDelivery.objects.get(job=job).succeeded


def test_succeeded_job_event_lists_absolute_stem_urls(owner, make_job, receiver, run_worker):
    server = receiver()
    job = make_job(owner, status="queued", callback_url=server.url)
    enqueue_separation(job)

    result = run_worker({**ALLOW_LOCAL, "STEMSITE_BASE_URL": "https://stems.example.org"})

    assert result.returncode == 0, result.stderr
    job.refresh_from_db()
    assert job.status == "succeeded", job.error_message
    assert len(server.requests) == 1, "one event per finished job"
    headers, body = server.requests[0]
    assert verify(secret_for(owner).secret, headers, body)
    event = json.loads(body)
    assert event["event"] == "job.succeeded"
    urls = {stem["name"]: stem["url"] for stem in event["job"]["stems"]}
    assert sorted(urls) == ["bass", "drums", "other", "vocals"]
    assert urls["vocals"] == "https://stems.example.org" + reverse("stem_file", args=[job.pk, "vocals"])


def test_job_without_callback_url_sends_nothing(owner, make_job, run_worker):
    job = make_job(owner, status="queued")

    cancel_job(job)
    run_worker()

    assert not WebhookDelivery.objects.exists()


def test_refused_callback_is_recorded_not_sent(owner, make_job, receiver, run_worker):
    server = receiver()
    job = make_job(owner, status="queued", callback_url=server.url)

    cancel_job(job)
    result = run_worker()  # 127.0.0.1 not allowed in the worker

    assert result.returncode == 0, result.stderr
    assert server.requests == []
    delivery = WebhookDelivery.objects.get(job=job)
    assert not delivery.succeeded
    assert "private, loopback or reserved" in delivery.error


@pytest.mark.slow
def test_failed_delivery_is_retried_by_run_workers_scheduler(owner, make_job, receiver, supervisor):  # noqa: F811
    server = receiver(statuses=[500])
    job = make_job(owner, status="queued", callback_url=server.url)
    supervisor({**ALLOW_LOCAL, "STEMSITE_WEBHOOK_RETRY_DELAYS": "1,1"})

    cancel_job(job)

    wait_until(lambda: WebhookDelivery.objects.filter(job=job).count() >= 2, timeout=90)
    first, second = WebhookDelivery.objects.filter(job=job).order_by("attempt")
    assert (first.attempt, first.status_code, first.succeeded) == (1, 500, False)
    assert first.error == "The receiver answered HTTP 500."
    assert (second.attempt, second.status_code, second.succeeded) == (2, 200, True)
    assert len(server.requests) == 2
    ids = {headers["X-Stemsite-Delivery"] for headers, _ in server.requests}
    assert len(ids) == 1, "a retry carries the same delivery id"
    assert all(verify(secret_for(owner).secret, headers, body) for headers, body in server.requests)


def test_redirects_are_not_followed(owner, make_job, receiver, run_worker):
    target = receiver()
    server = receiver(statuses=[302])
    job = make_job(owner, status="queued", callback_url=server.url)

    cancel_job(job)
    run_worker({**ALLOW_LOCAL, "STEMSITE_WEBHOOK_RETRY_DELAYS": ""})

    delivery = WebhookDelivery.objects.get(job=job)
    assert (delivery.status_code, delivery.succeeded) == (302, False)
    assert target.requests == []


def test_staff_see_deliveries_outsiders_do_not(owner, make_job, staff_client, outsider_client):
    job = make_job(owner, status="canceled", callback_url="https://93.184.216.34/hook")
    WebhookDelivery.objects.create(job=job, event="job.canceled", url=job.callback_url, status_code=500)
    url = reverse("admin:jobs_webhookdelivery_changelist")

    assert staff_client.get(url).status_code == 200
    assert b"93.184.216.34" in staff_client.get(url + "?succeeded__exact=0").content
    response = outsider_client.get(url)
    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]


def test_account_page_shows_the_secret_and_rotates_it(owner, owner_client, outsider_client):
    page = owner_client.get(reverse("account"))
    secret = secret_for(owner).secret
    assert secret.encode() in page.content

    response = owner_client.post(reverse("webhook_secret_rotate"))

    assert response.status_code == 302
    rotated = secret_for(owner).secret
    assert rotated != secret
    assert rotated.encode() in owner_client.get(reverse("account")).content
    assert secret.encode() not in outsider_client.get(reverse("account")).content


def test_staff_can_send_an_event_again(owner, make_job, receiver, run_worker, staff_client):
    server = receiver()
    job = make_job(owner, status="canceled", callback_url=server.url)
    delivery = WebhookDelivery.objects.create(job=job, event="job.canceled", url=server.url, status_code=500)

    response = staff_client.post(
        reverse("admin:jobs_webhookdelivery_changelist"),
        {"action": "redeliver_events", "_selected_action": [delivery.pk]},
    )
    run_worker(ALLOW_LOCAL)

    assert response.status_code == 302
    assert len(server.requests) == 1
    headers, body = server.requests[0]
    assert verify(secret_for(owner).secret, headers, body)
    latest = WebhookDelivery.objects.filter(job=job).order_by("-attempt").first()
    assert (latest.attempt, latest.succeeded) == (2, True)
