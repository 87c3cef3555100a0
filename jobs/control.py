"""Cancelling and retrying jobs: the database changes first, then RQ is told."""

import logging

import django_rq
from django.conf import settings
from redis.exceptions import RedisError
from rq.command import send_stop_job_command
from rq.exceptions import InvalidJobOperation, NoSuchJobError
from rq.job import Job as RQJob

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
    was_running = job.status == Job.Status.RUNNING
    if not job.mark_canceled():
        return False
    try:
        connection = django_rq.get_connection(settings.STEMSITE_QUEUE)
        if was_running:
            send_stop_job_command(connection, job.rq_job_id)
        else:
            RQJob.fetch(job.rq_job_id, connection=connection).cancel()
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


def retry_job(job: Job) -> bool:
    """Queue a failed or canceled job again as a new attempt; False if it cannot be retried.

    Raises IdenticalJobActive (carrying that job) when the same work is already queued or running.
    """
    if not job.input_file or not job.requeue():
        return False
    job.delete_stems()
    publish_job_state(job)
    enqueue_separation(job)
    return True
