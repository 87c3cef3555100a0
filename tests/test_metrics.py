"""/metrics: Prometheus text for staff or the metrics token, with samples the worker recorded."""

from pathlib import Path

import pytest
from django.test import override_settings
from django.urls import reverse
from prometheus_client.parser import text_string_to_metric_families

from jobs.background import tasks
from jobs.background.exports import enqueue_export
from jobs.background.tasks import enqueue_separation
from jobs.metrics import failure_reason

pytestmark = pytest.mark.django_db(transaction=True)

TOKEN = "a-metrics-token-for-tests"


def samples(content: bytes) -> dict:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(content.decode())
        for sample in family.samples
    }


@pytest.fixture
def metrics_dir(tmp_path, process_env):
    """A multi-process folder of this test's own, for the test process and its workers alike."""
    folder = tmp_path / "metrics"
    folder.mkdir()
    process_env["PROMETHEUS_MULTIPROC_DIR"] = str(folder)
    with override_settings(PROMETHEUS_MULTIPROC_DIR=folder):
        yield folder


def test_scrape_shows_a_finished_jobs_separation_time(owner, make_job, run_worker, staff_client, metrics_dir):
    job = make_job(owner, status="queued")
    enqueue_separation(job)

    result = run_worker()

    assert result.returncode == 0, result.stderr
    job.refresh_from_db()
    assert job.status == "succeeded", job.error_message
    response = staff_client.get(reverse("metrics"))
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    found = samples(response.content)
    assert found[("stemsite_separation_seconds_count", (("model", "htdemucs"),))] == 1
    assert found[("stemsite_realtime_factor_count", (("model", "htdemucs"),))] == 1
    assert found[("stemsite_jobs", (("status", "succeeded"),))] == 1
    assert found[("stemsite_jobs", (("status", "queued"),))] == 0
    for queue in ("separations", "short"):
        assert found[("stemsite_queue_depth", (("queue", queue),))] == 0
        assert found[("stemsite_workers", (("queue", queue),))] == 0


def test_failed_job_is_counted_by_reason(owner, make_job, run_worker, staff_client, metrics_dir):
    job = make_job(owner, status="queued")
    Path(job.input_file.path).write_bytes(b"this is not audio at all")
    enqueue_separation(job)

    run_worker()

    job.refresh_from_db()
    assert job.status == "failed"
    found = samples(staff_client.get(reverse("metrics")).content)
    assert found[("stemsite_job_failures_total", (("reason", "bad_audio"),))] == 1


def test_scrape_shows_each_queues_depth(owner, make_job, make_export, staff_client, metrics_dir):
    enqueue_separation(make_job(owner, status="queued"))
    for gain in (0.5, 0.7):
        enqueue_export(make_export(make_job(owner), gains={"vocals": gain}, status="queued"))

    found = samples(staff_client.get(reverse("metrics")).content)

    assert found[("stemsite_queue_depth", (("queue", "separations"),))] == 1
    assert found[("stemsite_queue_depth", (("queue", "short"),))] == 2


def test_anonymous_scrape_is_401(client):
    response = client.get(reverse("metrics"))

    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert response.json()["error"]["code"] == "unauthorized"


def test_signed_in_non_staff_scrape_is_403(outsider_client):
    assert outsider_client.get(reverse("metrics")).status_code == 403


@override_settings(STEMSITE_METRICS_TOKEN=TOKEN)
def test_bearer_token_scrapes_and_a_wrong_one_does_not(client, metrics_dir):
    assert client.get(reverse("metrics"), HTTP_AUTHORIZATION=f"Bearer {TOKEN}").status_code == 200
    assert client.get(reverse("metrics"), HTTP_AUTHORIZATION="Bearer wrong").status_code == 401


def test_without_a_configured_token_no_bearer_is_accepted(client):
    with override_settings(STEMSITE_METRICS_TOKEN=""):
        assert client.get(reverse("metrics"), HTTP_AUTHORIZATION="Bearer ").status_code == 401


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        (tasks.MSG_OUT_OF_MEMORY, "out_of_memory"),
        (tasks.MSG_WORKER_LOST, "worker_lost"),
        (tasks.MSG_WORKER_SHUT_DOWN, "worker_shut_down"),
        (tasks.MSG_INTERNAL, "internal"),
        (tasks.MSG_STORAGE_FULL, "storage"),
        (tasks.MSG_STORAGE_READ_ONLY, "storage"),
        (tasks.timeout_message(90), "timeout"),
    ],
)
def test_each_failure_message_has_its_reason_code(message, reason):
    assert failure_reason(message) == reason
