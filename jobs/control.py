"""Cancelling and retrying jobs: the database changes first, then RQ is told."""

import logging

import django_rq
from django.conf import settings
from redis.exceptions import RedisError
from rq.command import send_stop_job_command
from rq.exceptions import InvalidJobOperation, NoSuchJobError
from rq.job import Job as RQJob

from jobs.background.imports import enqueue_import
from jobs.background.tasks import enqueue_separation
from jobs.models import Job
from jobs.realtime.events import publish_job_state, publish_queue
from jobs.webhooks import queue_job_event

logger = logging.getLogger(__name__)


def cancel_job(job: Job) -> bool:
    """Take a queued job off the queue, or stop a running one; False if it had already finished.

    The row is marked canceled at once, so no late write from the run can revive it; a stopped run's
    partial stems are removed here and again by the worker once the run is dead (tasks.job_stopped).
    """
    was = job.status
    if not job.mark_canceled():
        return False
    try:
        if was == Job.Status.DOWNLOADING:
            _stop_download(job)
        elif was == Job.Status.RUNNING:
            send_stop_job_command(django_rq.get_connection(settings.STEMSITE_QUEUE), job.rq_job_id)
        else:
            RQJob.fetch(job.rq_job_id, connection=django_rq.get_connection(settings.STEMSITE_QUEUE)).cancel()
    except (NoSuchJobError, InvalidJobOperation):
        pass  # the run already ended, or never reached the queue
    except (RedisError, OSError) as error:
        # A queued job left in Redis is skipped by the worker: its row is no longer queued.
        logger.warning("Could not reach the queue to cancel job %s: %s", job.pk, error)
    job.delete_stems()
    publish_job_state(job)
    publish_queue()
    queue_job_event(job)
    return True


def _stop_download(job: Job) -> None:
    """Stop the download where it runs (the worker then removes its folder: imports.import_stopped),
    or take it off the imports queue before it starts."""
    connection = django_rq.get_connection(settings.STEMSITE_IMPORT_QUEUE)
    try:
        send_stop_job_command(connection, job.import_rq_id)
    except InvalidJobOperation:  # not started yet
        RQJob.fetch(job.import_rq_id, connection=connection).cancel()


def retry_job(job: Job) -> bool:
    """Queue a failed or canceled job again as a new attempt; False if it cannot be retried. An
    import whose download did not complete downloads again.

    Raises IdenticalJobActive (carrying that job) when the same work is already active.
    """
    if not (job.input_file or job.is_import) or not job.requeue():
        return False
    job.delete_stems()
    publish_job_state(job)
    if job.status == Job.Status.DOWNLOADING:
        enqueue_import(job)
    else:
        enqueue_separation(job)
    return True
