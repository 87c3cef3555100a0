"""The reconciler: the database is the truth about jobs, RQ is only how they travel to workers.

Every few seconds it compares queued and running rows with what RQ knows and resolves each
mismatch: a queued row whose RQ job is gone (Redis restarted, or was down at upload) is queued
again; a running row whose RQ job or worker is gone (a crash, a killed worker, a lost Redis) is
queued as a new attempt a bounded number of times, then failed with a message; so is a download
(an import) whose RQ job or worker is gone, on the imports queue. Mix exports get
the same care on the short queue: a queued one is queued again, a running one whose render is
gone fails with a sentence (asking again renders it anew). So do webhook events: a finished job's
event that was neither delivered nor is on its way is queued again. A Redis lock makes sure only
one reconciler acts at a time, however many machines run workers.
"""

import logging
import shutil
from dataclasses import dataclass, field
from datetime import timedelta

import django_rq
from django.conf import settings
from django.db.models import Exists, OuterRef
from django.utils import timezone
from redis import Redis
from rq.exceptions import NoSuchJobError
from rq.job import Job as RQJob
from rq.job import JobStatus
from rq.utils import utcparse
from rq.worker import Worker

from jobs import tracing
from jobs.background.exports import enqueue_export, export_rq_id, fail_lost_export
from jobs.background.imports import MSG_DOWNLOAD_LOST, enqueue_import, import_folder
from jobs.background.tasks import MSG_WORKER_LOST, enqueue_separation
from jobs.metrics import count_failure
from jobs.models import Job, MixExport, WebhookDelivery
from jobs.realtime.events import publish_job_state, publish_queue
from jobs.webhooks import event_rq_id, queue_job_event

logger = logging.getLogger(__name__)

LOCK_NAME = "stemsite:reconciler"
TERMINAL = {JobStatus.FINISHED, JobStatus.FAILED, JobStatus.STOPPED, JobStatus.CANCELED}
# Within a delivery's result_ttl (an hour): an event sent in that time is still known to RQ or has
# left a delivery row, so only a lost one is queued again.
EVENT_WINDOW = timedelta(hours=1)


@dataclass
class Reconciliation:
    """What one pass did, by job id; `skipped` when another reconciler held the lock."""

    requeued: list = field(default_factory=list)
    recovered: list = field(default_factory=list)
    failed: list = field(default_factory=list)
    exports_requeued: list = field(default_factory=list)
    exports_failed: list = field(default_factory=list)
    events_requeued: list = field(default_factory=list)
    downloads_recovered: list = field(default_factory=list)
    downloads_failed: list = field(default_factory=list)
    skipped: bool = False

    @property
    def changed(self) -> bool:
        return bool(self.requeued or self.recovered or self.failed)

    @property
    def downloads_changed(self) -> bool:
        return bool(self.downloads_recovered or self.downloads_failed)

    @property
    def exports_changed(self) -> bool:
        return bool(self.exports_requeued or self.exports_failed)


def reconcile() -> Reconciliation:
    """One pass over every queued and running job. Raises RedisError when Redis cannot be reached."""
    connection = django_rq.get_connection(settings.STEMSITE_QUEUE)
    lock = connection.lock(LOCK_NAME, timeout=max(60, 6 * settings.STEMSITE_RECONCILE_INTERVAL))
    if not lock.acquire(blocking=False):
        return Reconciliation(skipped=True)
    try:
        result = _reconcile(connection)
    finally:
        lock.release()
    if result.changed:
        publish_queue()
    return result


def _reconcile(connection: Redis) -> Reconciliation:
    result = Reconciliation()
    settled_before = timezone.now() - timedelta(seconds=settings.STEMSITE_RECONCILE_GRACE_SECONDS)
    queued = Job.objects.select_related("owner").filter(
        status=Job.Status.QUEUED, queued_at__lt=settled_before
    )
    for job in queued:
        if not _carried(job.rq_job_id, connection):
            logger.info("Job %s is queued but not in RQ: queuing it again", job.pk)
            with _action("reconcile: queue again", job):
                if enqueue_separation(job):
                    result.requeued.append(job.pk)
    for job in Job.objects.select_related("owner").filter(status=Job.Status.RUNNING):
        if not _carried(job.rq_job_id, connection):
            _resolve_lost_run(job, result)
    _reconcile_downloads(result, settled_before)
    _reconcile_exports(result, settled_before)
    _reconcile_events(result, settled_before)
    return result


def _reconcile_downloads(result: Reconciliation, settled_before) -> None:
    """Imports whose download RQ no longer carries (never queued, Redis lost it, or its worker
    vanished): downloaded afresh as a new attempt while recoveries are left, else failed."""
    connection = django_rq.get_connection(settings.STEMSITE_IMPORT_QUEUE)
    downloading = Job.objects.select_related("owner").filter(
        status=Job.Status.DOWNLOADING, queued_at__lt=settled_before
    )
    for job in downloading:
        if _carried(job.import_rq_id, connection):
            continue
        lost = import_folder(job.pk, job.attempt)
        if job.recoveries < settings.STEMSITE_MAX_RECOVERIES and job.recover_lost_download():
            logger.warning("Import %s lost its download: trying again as attempt %s", job.pk, job.attempt)
            publish_job_state(job)
            enqueue_import(job)
            result.downloads_recovered.append(job.pk)
        elif job.mark_failed(MSG_DOWNLOAD_LOST):
            logger.warning("Import %s lost its download again: failed", job.pk)
            publish_job_state(job)
            queue_job_event(job)
            count_failure(MSG_DOWNLOAD_LOST)
            result.downloads_failed.append(job.pk)
        else:
            continue
        shutil.rmtree(lost, ignore_errors=True)  # when the lost worker ran on this machine


def _reconcile_events(result: Reconciliation, settled_before) -> None:
    """Finished jobs' webhook events that RQ never got or lost, with no delivery recorded: queued again.

    A delivery that ran left a row; one still on its way is known to RQ by its id. A failed
    delivery job stays known to RQ for a day, so a broken one is not sent over and over.
    """
    connection = django_rq.get_connection(settings.STEMSITE_SHORT_QUEUE)
    delivered = WebhookDelivery.objects.filter(job=OuterRef("pk"), created_at__gte=OuterRef("finished_at"))
    finished = (
        Job.objects.listed()
        .select_related("owner")
        .exclude(callback_url="")
        .filter(status__in=Job.FINISHED, finished_at__lt=settled_before)
        .filter(finished_at__gte=timezone.now() - EVENT_WINDOW)
        .exclude(Exists(delivered))
    )
    for job in finished:
        if not RQJob.exists(event_rq_id(job), connection=connection):
            logger.info("Job %s: its %s event was lost before delivery; queuing it again", job.pk, job.status)
            with _action("reconcile: queue webhook again", job):
                if queue_job_event(job):
                    result.events_requeued.append(job.pk)


def _reconcile_exports(result: Reconciliation, settled_before) -> None:
    """Mixes whose render RQ no longer carries: queued ones go again, running ones fail."""
    connection = django_rq.get_connection(settings.STEMSITE_SHORT_QUEUE)
    exports = MixExport.objects.all()
    for export in exports.filter(status=MixExport.Status.QUEUED, created_at__lt=settled_before):
        if not _carried(export_rq_id(export.pk), connection):
            logger.info("Mix export %s is queued but not in RQ: queuing it again", export.pk)
            if enqueue_export(export):
                result.exports_requeued.append(export.pk)
    for export in exports.filter(status=MixExport.Status.RUNNING):
        if not _carried(export_rq_id(export.pk), connection):
            logger.warning("Mix export %s lost its worker: failed", export.pk)
            fail_lost_export(export.pk)
            result.exports_failed.append(export.pk)


def _resolve_lost_run(job: Job, result: Reconciliation) -> None:
    """Queue a new attempt while recoveries are left, else fail; either way no partial stems stay."""
    lost = job.attempt
    if job.recoveries < settings.STEMSITE_MAX_RECOVERIES and job.recover_lost_run():
        logger.warning("Job %s lost its worker: queued again as attempt %s", job.pk, job.attempt)
        with _action("reconcile: recover lost run", job, {"stemsite.job.lost_attempt": lost}):
            job.delete_stems()
            publish_job_state(job)
            enqueue_separation(job)
        result.recovered.append(job.pk)
    elif job.mark_failed(MSG_WORKER_LOST):
        logger.warning("Job %s lost its worker again: failed", job.pk)
        with _action("reconcile: fail lost run", job, {"stemsite.job.lost_attempt": lost}):
            tracing.failed(MSG_WORKER_LOST)
            job.delete_stems()
            publish_job_state(job)
            queue_job_event(job)
        count_failure(MSG_WORKER_LOST)
        result.failed.append(job.pk)


def _action(name: str, job: Job, attributes: dict | None = None):
    """A trace of its own for what the reconciler does to a job, linked to the trace that submitted
    it; passes that change nothing are not traced."""
    attributes = {"stemsite.job.id": str(job.pk), "stemsite.job.attempt": job.attempt, **(attributes or {})}
    return tracing.span(name, attributes, link=job.trace_parent)


def _carried(rq_job_id: str, connection: Redis) -> bool:
    """Whether RQ still carries this attempt: waiting in the queue, or started on a live worker."""
    try:
        rq_job = RQJob.fetch(rq_job_id, connection=connection)
    except NoSuchJobError:
        return False
    status = rq_job.get_status(refresh=False)
    if status in TERMINAL:
        return False
    if status == JobStatus.STARTED:
        return worker_is_alive(rq_job.worker_name, connection)
    return True


def worker_is_alive(name: str | None, connection: Redis) -> bool:
    """A worker is gone when its key has expired or its parent stopped heartbeating.

    A busy RQ worker's parent writes `last_heartbeat` every job monitoring interval and lets its
    key expire 60 s after that; a crashed host stops both, so a stale heartbeat tells sooner.
    """
    if not name:
        return False
    raw = connection.hget(Worker.redis_worker_namespace_prefix + name, "last_heartbeat")
    if raw is None:
        return False
    age = (timezone.now() - utcparse(raw.decode())).total_seconds()
    return age <= settings.STEMSITE_WORKER_LOST_AFTER
