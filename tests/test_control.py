"""Cancel, retry, and reuse of identical work."""

import django_rq
import pytest
from django.conf import settings
from django.urls import reverse

from jobs.models import Job
from tests.conftest import media_files
from tests.test_worker import child_pids, upload, wait_until

pytestmark = pytest.mark.django_db(transaction=True)


def queue():
    return django_rq.get_queue(settings.STEMSITE_QUEUE)


def test_identical_upload_returns_the_existing_stems_without_a_worker_run(
    owner_client, make_audio, run_worker
):
    source = make_audio("song.wav", seconds=2)
    first = upload(owner_client, source)
    assert run_worker().returncode == 0
    first.refresh_from_db()
    assert first.status == "succeeded"

    with source.open("rb") as handle:
        response = owner_client.post(reverse("job_create"), {"files": handle})

    assert response["Location"] == first.get_absolute_url()
    assert Job.objects.count() == 1
    assert queue().job_ids == []
    assert "already separated with these settings" in owner_client.get(response["Location"]).content.decode()


def test_same_audio_with_other_options_or_owner_is_separated_again(owner_client, outsider_client, make_audio):
    source = make_audio("song.wav", seconds=1)
    upload(owner_client, source)
    with source.open("rb") as handle:
        owner_client.post(reverse("job_create"), {"files": handle, "quality": "fast"})
    upload(outsider_client, source)
    assert Job.objects.count() == 3
    assert len(queue().job_ids) == 3


def test_cancel_a_queued_job_takes_it_off_the_queue(owner_client, make_audio, run_worker):
    job = upload(owner_client, make_audio("song.wav", seconds=1))
    assert queue().job_ids == [job.rq_job_id]

    owner_client.post(reverse("job_cancel", args=[job.pk]))

    job.refresh_from_db()
    assert job.status == "canceled"
    assert queue().job_ids == []
    assert run_worker().returncode == 0
    job.refresh_from_db()
    assert job.status == "canceled"
    assert not job.stems.exists()


@pytest.mark.slow
def test_cancel_a_running_job_stops_it_and_removes_partial_stems(
    owner_client, make_audio, start_worker, media_root
):
    job = upload(owner_client, make_audio("long.flac", seconds=120))
    later = upload(owner_client, make_audio("short.wav", seconds=1))
    worker = start_worker()
    wait_until(lambda: Job.objects.get(pk=job.pk).status == "running")
    horse = wait_until(lambda: child_pids(worker.pid))

    owner_client.post(reverse("job_cancel", args=[job.pk]))

    assert Job.objects.get(pk=job.pk).status == "canceled"
    wait_until(lambda: horse[0] not in child_pids(worker.pid))
    wait_until(lambda: Job.objects.get(pk=later.pk).status == "succeeded")
    assert worker.poll() is None, "the worker itself keeps running"
    job.refresh_from_db()
    assert job.status == "canceled"
    assert not job.stems.exists()
    assert not [path for path in media_files(media_root) if f"{job.pk}/stems" in str(path)]


def test_finished_job_cannot_be_canceled(owner_client, owner, make_job):
    job = make_job(owner)
    owner_client.post(reverse("job_cancel", args=[job.pk]))
    job.refresh_from_db()
    assert job.status == "succeeded"
    assert job.stems.count() == 4


@pytest.mark.slow
def test_retry_of_a_failed_job_runs_a_new_attempt(owner_client, make_audio, run_worker, tmp_path):
    job = upload(owner_client, make_audio("song.wav", seconds=1))
    (tmp_path / "empty").mkdir()
    assert run_worker({"STEMSITE_MODEL_REPO": str(tmp_path / "empty")}).returncode == 0
    job.refresh_from_db()
    assert job.status == "failed"

    owner_client.post(reverse("job_retry", args=[job.pk]))

    job.refresh_from_db()
    assert (job.status, job.attempt, job.error_message) == ("queued", 2, "")
    assert run_worker().returncode == 0
    job.refresh_from_db()
    assert job.status == "succeeded"
    assert job.stems.count() == 4


def test_a_stale_attempt_cannot_overwrite_a_newer_one(owner, make_job):
    job = make_job(owner, status="failed")
    stale = Job.objects.get(pk=job.pk)
    assert job.requeue()
    assert not stale.mark_running()
    assert not stale.mark_failed("old news")
    job.refresh_from_db()
    assert (job.status, job.attempt, job.error_message) == ("queued", 2, "")


def test_outsider_cannot_cancel_or_retry(outsider_client, owner, make_job):
    job = make_job(owner, status="queued")
    assert outsider_client.post(reverse("job_cancel", args=[job.pk])).status_code == 404
    assert outsider_client.post(reverse("job_retry", args=[job.pk])).status_code == 404
    job.refresh_from_db()
    assert job.status == "queued"
