"""Publishing a job's state to the browsers watching it, through the channel layer.

Group names and the event type are defined here once; consumers only forward what arrives.
A push that cannot be delivered is logged and dropped: the database stays the truth, and
pages catch up from it when their socket (re)connects or re-reads the job (consumers.py).
A channel layer that hangs costs a job at most PUSH_TIMEOUT_SECONDS, then pushes pause.
"""

import asyncio
import logging
import os
import threading
import time

from channels.exceptions import ChannelFull
from channels.layers import get_channel_layer
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from jobs.eta import estimates
from jobs.models import Job, MixExport
from jobs.realtime.fragments import export_html, job_row_html, job_status_html

logger = logging.getLogger(__name__)

EVENT_TYPE = "job.state"
# A push waits at most this long; after one times out, pushes from this process stop for
# PAUSE_AFTER_FAILURE_SECONDS, so progress ticks do not each wait on a hung Redis.
PUSH_TIMEOUT_SECONDS = 3.0
PAUSE_AFTER_FAILURE_SECONDS = 30.0
_paused_until = 0.0


def job_group(job_id) -> str:
    return f"job-{job_id}"


def user_group(user_id) -> str:
    return f"user-{user_id}"


def publish_job_state(job: Job) -> None:
    """Send the job's status block to its page and its list row to its owner's job list."""
    _send(
        [
            (job_group(job.pk), job_status_html(job)),
            (user_group(job.owner_id), job_row_html(job)),
        ]
    )


def publish_job_row(job: Job) -> None:
    """Send the job's list row to its owner's open job lists, where a new job is put on top."""
    _send([(user_group(job.owner_id), job_row_html(job))])


def publish_export_state(export: MixExport) -> None:
    """Send a mix export's block to its job's page; htmx swaps it by its id."""
    _send([(job_group(export.job_id), export_html(export))])


def publish_queue() -> None:
    """Send every queued job its new place in line and time estimate: the queue has moved."""
    current = estimates()
    queued = Job.objects.filter(pk__in=[pk for pk, est in current.items() if est.position is not None])
    _send([(job_group(job.pk), job_status_html(job, current[job.pk])) for job in queued])


def _send(messages: list[tuple[str, str]]) -> None:
    global _paused_until
    if not messages or time.monotonic() < _paused_until:
        return
    try:
        _publisher.run(_send_all(messages))
    except (TimeoutError, RedisTimeoutError) as error:
        _paused_until = time.monotonic() + PAUSE_AFTER_FAILURE_SECONDS
        logger.warning(
            "Could not publish job updates: %r; pushes pause for %.0f s", error, PAUSE_AFTER_FAILURE_SECONDS
        )
    except (RedisError, OSError, ChannelFull) as error:
        logger.warning("Could not publish job updates: %r", error)


async def _send_all(messages: list[tuple[str, str]]) -> None:
    layer = get_channel_layer()
    async with asyncio.timeout(PUSH_TIMEOUT_SECONDS):
        for group, html in messages:
            await layer.group_send(group, {"type": EVENT_TYPE, "html": html})


class _Publisher:
    """One event loop per process for publishing from synchronous code (work horses, views).

    async_to_sync ran every publish in a new event loop on a new thread, and the channel layer
    keeps one Redis connection per loop: each progress tick opened and closed a connection
    (bench/push.py, `publish` column). This loop, and so its connection, is kept between publishes;
    threads take turns on it. A forked process (an RQ work horse) starts its own: it must not write
    on the connection its parent goes on using. A failed publish drops the loop and its connection.
    """

    def __init__(self):
        self.lock = threading.Lock()
        self.loop: asyncio.AbstractEventLoop | None = None
        os.register_at_fork(after_in_child=self._forget)

    def run(self, coroutine):
        with self.lock:
            if self.loop is None:
                self.loop = asyncio.new_event_loop()
            try:
                return self.loop.run_until_complete(coroutine)
            except BaseException:
                self.loop.close()  # the channel layer closes its connection with the loop
                self.loop = None
                raise

    def _forget(self) -> None:
        self.lock = threading.Lock()
        self.loop = None


_publisher = _Publisher()
