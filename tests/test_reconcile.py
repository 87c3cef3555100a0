"""The reconciler, one pass at a time, against the real test Redis and real RQ jobs."""

from datetime import timedelta

import django_rq
import pytest
from django.conf import settings
from django.utils import timezone
from rq.job import Job as RQJob
from rq.job import JobStatus

from jobs.background.exports import MSG_WORKER_LOST as EXPORT_WORKER_LOST
from jobs.background.exports import enqueue_export, export_rq_id, request_export
from jobs.background.reconcile import LOCK_NAME, reconcile
from jobs.background.tasks import MSG_WORKER_LOST, enqueue_separation
from jobs.models import Job, MixExport, WebhookDelivery
from jobs.webhooks import event_rq_id, queue_job_event
from tests.conftest import media_files

pytestmark = pytest.mark.django_db(transaction=True)


def queue():
    return django_rq.get_queue(settings.STEMSITE_QUEUE)


def settled(job: Job) -> Job:
    """Move the job's queue time past the grace period the upload's own enqueue has."""
    past = timezone.now() - timedelta(seconds=settings.STEMSITE_RECONCILE_GRACE_SECONDS + 1)
    Job.objects.filter(pk=job.pk).update(queued_at=past)
    job.refresh_from_db()
    return job


def write_partial_stem(job: Job, media_root) -> None:
    folder = media_root / f"jobs/{job.pk}/stems"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "drums.mp3").write_bytes(b"half a stem")


def test_queued_job_missing_from_redis_is_queued_again(owner, make_job):
    job = settled(make_job(owner, status="queued"))
    fresh = make_job(owner, status="queued", name="Fresh.wav")

    result = reconcile()

    assert result.requeued == [job.pk]
    assert queue().job_ids == [job.rq_job_id], "a job inside its grace period is left to its own enqueue"
    assert Job.objects.get(pk=job.pk).status == "queued"
    assert Job.objects.get(pk=fresh.pk).status == "queued"


def test_queued_job_already_in_redis_is_left_alone(owner, make_job):
    job = settled(make_job(owner, status="queued"))
    assert enqueue_separation(job)

    assert reconcile().changed is False
    assert queue().job_ids == [job.rq_job_id]


def test_queued_job_whose_rq_job_ended_is_queued_again(owner, make_job, redis_db):
    job = settled(make_job(owner, status="queued"))
    enqueue_separation(job)
    rq_job = RQJob.fetch(job.rq_job_id, connection=redis_db)
    queue().remove(rq_job)
    rq_job.set_status(JobStatus.FAILED)

    assert reconcile().requeued == [job.pk]
    assert queue().job_ids == [job.rq_job_id]


def test_lost_run_is_queued_again_as_a_new_attempt(owner, make_job, media_root):
    job = make_job(owner, status="running", progress=40, started_at=timezone.now())
    write_partial_stem(job, media_root)

    result = reconcile()

    job.refresh_from_db()
    assert result.recovered == [job.pk]
    assert (job.status, job.attempt, job.recoveries, job.progress) == ("queued", 2, 1, 0)
    assert queue().job_ids == [job.rq_job_id] == [f"separate-{job.pk}-2"]
    assert all("/stems/" not in str(path) for path in media_files(media_root))


def test_run_lost_again_after_its_recovery_fails_with_a_message(owner, make_job, media_root):
    job = make_job(owner, status="running", recoveries=settings.STEMSITE_MAX_RECOVERIES)
    write_partial_stem(job, media_root)

    result = reconcile()

    job.refresh_from_db()
    assert result.failed == [job.pk]
    assert job.status == "failed"
    assert job.error_message == MSG_WORKER_LOST
    assert queue().job_ids == []
    assert all("/stems/" not in str(path) for path in media_files(media_root))


def test_run_on_a_worker_that_stopped_heartbeating_is_lost(owner, make_job, redis_db):
    job = make_job(owner, status="running")
    enqueue_separation(job)
    rq_job = RQJob.fetch(job.rq_job_id, connection=redis_db)
    rq_job.worker_name = "crashed-host"
    rq_job.save()
    rq_job.set_status(JobStatus.STARTED)
    stale = timezone.now() - timedelta(seconds=settings.STEMSITE_WORKER_LOST_AFTER + 5)
    redis_db.hset("rq:worker:crashed-host", "last_heartbeat", stale.strftime("%Y-%m-%dT%H:%M:%S.%fZ"))

    assert reconcile().recovered == [job.pk]


def test_run_on_a_live_worker_is_left_alone(owner, make_job, redis_db):
    job = make_job(owner, status="running")
    enqueue_separation(job)
    rq_job = RQJob.fetch(job.rq_job_id, connection=redis_db)
    rq_job.worker_name = "busy-worker"
    rq_job.save()
    rq_job.set_status(JobStatus.STARTED)
    redis_db.hset("rq:worker:busy-worker", "last_heartbeat", timezone.now().strftime("%Y-%m-%dT%H:%M:%S.%fZ"))

    assert reconcile().changed is False
    assert Job.objects.get(pk=job.pk).status == "running"


def test_stale_attempt_cannot_overwrite_the_recovered_job(owner, make_job):
    job = make_job(owner, status="running")
    stale = Job.objects.get(pk=job.pk)
    reconcile()
    new_run = Job.objects.get(pk=job.pk)
    assert new_run.mark_running()
    assert new_run.set_progress(30)

    assert not stale.set_progress(90)
    assert not stale.mark_succeeded()
    assert not stale.mark_failed("late failure")
    assert not stale.recover_lost_run(), "the same lost attempt is recovered only once"
    job.refresh_from_db()
    assert (job.status, job.attempt, job.progress, job.error_message) == ("running", 2, 30, "")


def test_only_one_reconciler_acts_at_a_time(owner, make_job, redis_db):
    job = make_job(owner, status="running")
    lock = redis_db.lock(LOCK_NAME, timeout=30)
    assert lock.acquire(blocking=False)
    try:
        result = reconcile()
    finally:
        lock.release()

    assert result.skipped
    assert Job.objects.get(pk=job.pk).status == "running"
    assert reconcile().recovered == [job.pk]


def short_queue():
    return django_rq.get_queue(settings.STEMSITE_SHORT_QUEUE)


def make_export(job: Job, status: str = "queued", settled_for: float = 0) -> MixExport:
    created = timezone.now() - timedelta(seconds=settled_for)
    key = f"key-{status}-{settled_for}"
    return MixExport.objects.create(
        job=job, settings_key=key, output_format="mp3", status=status, created_at=created
    )


def test_queued_export_missing_from_redis_is_queued_again_once(owner, make_job):
    job = make_job(owner)
    lost = make_export(job, settled_for=settings.STEMSITE_RECONCILE_GRACE_SECONDS + 1)
    fresh = make_export(job)

    result = reconcile()

    assert result.exports_requeued == [lost.pk]
    assert short_queue().job_ids == [export_rq_id(lost.pk)], "a new export is left to its own enqueue"
    assert reconcile().exports_changed is False, "once in RQ it is left alone"
    assert short_queue().job_ids == [export_rq_id(lost.pk)]
    assert MixExport.objects.get(pk=fresh.pk).status == "queued"


def test_running_export_whose_render_is_gone_fails_with_a_sentence(owner, make_job, redis_db):
    job = make_job(owner)
    lost = make_export(job, status="running")
    alive = make_export(job, status="running", settled_for=1)
    enqueue_export(alive)
    rq_job = RQJob.fetch(export_rq_id(alive.pk), connection=redis_db)
    rq_job.worker_name = "short-worker"
    rq_job.save()
    rq_job.set_status(JobStatus.STARTED)
    now = timezone.now().strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    redis_db.hset("rq:worker:short-worker", "last_heartbeat", now)

    assert reconcile().exports_failed == [lost.pk]

    lost.refresh_from_db()
    assert lost.status == "failed"
    assert lost.error_message == EXPORT_WORKER_LOST
    assert MixExport.objects.get(pk=alive.pk).status == "running"


def test_export_asked_for_again_is_in_the_queue_once(owner, make_job):
    job = make_job(owner)
    export = request_export(job, {"drums": 1.0, "bass": 0.5, "other": 1.0, "vocals": 0.0}, "mp3")
    assert export.mark_failed("the first render failed")

    again = request_export(job, {"drums": 1.0, "bass": 0.5, "other": 1.0, "vocals": 0.0}, "mp3")

    assert again.pk == export.pk
    assert again.status == "queued"
    assert short_queue().job_ids == [export_rq_id(export.pk)]


# Webhook events: one lost before its first delivery is sent once the reconciler finds it.


def finished(owner, make_job, ago: float, callback: bool = True, status: str = "failed") -> Job:
    when = timezone.now() - timedelta(seconds=ago)
    url = "https://hooks.example.com/stems" if callback else ""
    return make_job(owner, status=status, callback_url=url, finished_at=when)


def test_finished_jobs_event_lost_before_delivery_is_queued_again_once(owner, make_job, settings):
    settings.STEMSITE_RECONCILE_GRACE_SECONDS = 60  # the fresh finish stays fresh however slow this is
    settled_for = settings.STEMSITE_RECONCILE_GRACE_SECONDS + 1
    lost = finished(owner, make_job, settled_for)
    waiting = finished(owner, make_job, settled_for, status="succeeded")
    assert queue_job_event(waiting), "its delivery is still in the queue"
    delivered = finished(owner, make_job, settled_for)
    url = delivered.callback_url
    WebhookDelivery.objects.create(job=delivered, event="job.failed", url=url, succeeded=True)
    just_now = finished(owner, make_job, 0)
    finished(owner, make_job, settled_for, callback=False)
    finished(owner, make_job, 2 * 3600)  # long ago: its delivery record may have expired in RQ

    result = reconcile()

    assert result.events_requeued == [lost.pk]
    assert sorted(short_queue().job_ids) == sorted([event_rq_id(waiting), event_rq_id(lost)])
    assert reconcile().events_requeued == [], "once in RQ it is left alone"
    assert len(short_queue().job_ids) == 2
    event = RQJob.fetch(event_rq_id(lost), connection=short_queue().connection)
    assert (event.func_name, event.args[:2]) == ("jobs.webhooks.deliver_event", (str(lost.pk), "job.failed"))
    assert just_now.pk not in result.events_requeued, "a fresh finish is left to its own enqueue"
