"""Prometheus metrics: what workers observe as jobs finish, and what a scrape reads from the database.

Worker processes record into prometheus_client's multi-process files (settings.PROMETHEUS_MULTIPROC_DIR,
set in settings.py before the library is imported). A separation is observed by the worker's
long-lived parent once its forked work horse has ended, from the job's row: the horse itself
records nothing, so no file is left per finished job, and a killed horse's job is counted too.
Job counts by status, queue depth, worker count and webhook outcomes are read at scrape time.
"""

import logging
import re

import django_rq
from django.conf import settings
from django.db.models import Count
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest, multiprocess
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from redis.exceptions import RedisError
from rq import Queue, Worker

from jobs.models import Job, WebhookDelivery

logger = logging.getLogger(__name__)

SEPARATION_SECONDS = Histogram(
    "stemsite_separation_seconds",
    "Wall-clock seconds from a job's start to its success, by model.",
    ["model"],
    buckets=(1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1200, 3600),
)
REALTIME_FACTOR = Histogram(
    "stemsite_realtime_factor",
    "Seconds of audio separated per second of work (above 1: faster than real time), by model.",
    ["model"],
    buckets=(0.1, 0.25, 0.5, 1, 2, 4, 8, 16, 32, 64),
)
FAILURES = Counter("stemsite_job_failures", "Failed jobs, by a short reason code.", ["reason"])

# A failure message's kind, told by words it contains; the first match wins.
FAILURE_REASONS = [
    ("timeout", re.compile(r"longer than the allowed")),
    ("out_of_memory", re.compile(r"ran out of memory")),
    ("worker_lost", re.compile(r"worker stopped unexpectedly")),
    ("worker_shut_down", re.compile(r"worker was shut down")),
    ("storage", re.compile(r"storage")),
    ("model_unavailable", re.compile(r"model", re.IGNORECASE)),
    ("internal", re.compile(r"error on the server")),
    ("bad_audio", re.compile(r".")),
]


def failure_reason(message: str) -> str:
    """A short, stable code for a failure message (unreadable audio is the remaining kind)."""
    for code, pattern in FAILURE_REASONS:
        if pattern.search(message or ""):
            return code
    return "unknown"


def count_failure(message: str) -> None:
    FAILURES.labels(reason=failure_reason(message)).inc()


def observe_finished_job(job_id: str, attempt: int) -> None:
    """Record a separation that just ended in this process's samples (called by the worker's parent)."""
    job = Job.objects.filter(pk=job_id, attempt=attempt).first()
    if job is None:
        return
    if job.status == Job.Status.SUCCEEDED and job.started_at and job.finished_at:
        seconds = max((job.finished_at - job.started_at).total_seconds(), 1e-3)
        SEPARATION_SECONDS.labels(model=job.model_name).observe(seconds)
        if job.duration_seconds:
            REALTIME_FACTOR.labels(model=job.model_name).observe(job.duration_seconds / seconds)
    elif job.status == Job.Status.FAILED:
        count_failure(job.error_message)


def process_exited(pid: int) -> None:
    """Drop a dead process's live-gauge files; its counters and histograms stay in the totals."""
    multiprocess.mark_process_dead(pid, str(settings.PROMETHEUS_MULTIPROC_DIR))


class _ScrapeTimeCollector:
    """Figures read when scraped: jobs by status, depth and workers of each queue, webhook deliveries."""

    def collect(self):
        jobs = GaugeMetricFamily("stemsite_jobs", "Jobs by status.", labels=["status"])
        counts = dict(Job.objects.values_list("status").annotate(n=Count("pk")).order_by())
        for status in Job.Status.values:
            jobs.add_metric([status], counts.get(status, 0))
        yield jobs
        deliveries = CounterMetricFamily(
            "stemsite_webhook_deliveries", "Webhook delivery attempts, by outcome.", labels=["outcome"]
        )
        outcomes = dict(WebhookDelivery.objects.values_list("succeeded").annotate(n=Count("pk")).order_by())
        deliveries.add_metric(["succeeded"], outcomes.get(True, 0))
        deliveries.add_metric(["failed"], outcomes.get(False, 0))
        yield deliveries
        try:
            connection = django_rq.get_connection(settings.STEMSITE_QUEUE)
            queues = [Queue(name, connection=connection) for name in settings.RQ_QUEUES]
            figures = [(queue.name, queue.count, Worker.count(queue=queue)) for queue in queues]
        except (RedisError, OSError) as error:
            logger.warning("Metrics: Redis cannot be reached: %s", error)
            up = GaugeMetricFamily("stemsite_redis_up", "Whether Redis answered this scrape.")
            up.add_metric([], 0)
            yield up
            return
        up = GaugeMetricFamily("stemsite_redis_up", "Whether Redis answered this scrape.")
        up.add_metric([], 1)
        yield up
        depth = GaugeMetricFamily("stemsite_queue_depth", "Jobs waiting, by queue.", labels=["queue"])
        workers = GaugeMetricFamily("stemsite_workers", "Workers listening, by queue.", labels=["queue"])
        for name, waiting, listening in figures:
            depth.add_metric([name], waiting)
            workers.add_metric([name], listening)
        yield depth
        yield workers


def render_metrics() -> bytes:
    """Every process's samples merged, plus the scrape-time figures, in Prometheus text format."""
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=str(settings.PROMETHEUS_MULTIPROC_DIR))
    registry.register(_ScrapeTimeCollector())
    return generate_latest(registry)
