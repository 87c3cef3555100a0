"""Queue positions and time estimates, from the database and the speed of recent jobs."""

import heapq
import logging
import statistics
from dataclasses import dataclass

from django.conf import settings
from django.utils import timezone
from redis.exceptions import RedisError
from rq import Queue, Worker

from jobs.models import Job

logger = logging.getLogger(__name__)

RECENT_JOBS = 20
MAX_QUEUE = 200


@dataclass(frozen=True)
class Estimate:
    position: int | None  # 1 = next to start; None when running
    seconds_left: float | None  # until the job should be finished


def expected_seconds(job: Job, speeds: dict[tuple[str, str], float]) -> float:
    """How long this job should take, from the measured speed of recent jobs of its model and precision."""
    options = job.job_options
    speed = speeds.get((job.model_name, options.precision))
    if speed is None:
        speed = (
            settings.STEMSITE_EXPECTED_SECONDS_PER_AUDIO_SECOND
            * options.model_choice.cost
            * options.precision_choice.cost
        )
    return speed * options.quality_choice.cost * (job.duration_seconds or 0)


def recent_speeds() -> dict[tuple[str, str], float]:
    """Median seconds of work per second of audio (at normal quality) per model and precision, recent
    jobs only."""
    rows = (
        Job.objects.filter(status=Job.Status.SUCCEEDED, duration_seconds__gt=0, started_at__isnull=False)
        .order_by("-finished_at")
        .values_list("model_name", "options", "started_at", "finished_at", "duration_seconds")[
            : RECENT_JOBS * 5
        ]
    )
    samples: dict[tuple[str, str], list[float]] = {}
    for model, options, started, finished, duration in rows:
        choices = Job(model_name=model, options=options).job_options
        kind = samples.setdefault((model, choices.precision), [])
        if len(kind) < RECENT_JOBS:
            kind.append((finished - started).total_seconds() / duration / choices.quality_choice.cost)
    return {kind: statistics.median(values) for kind, values in samples.items()}


def worker_count() -> int:
    """How many workers take jobs (at least 1), through one Redis client per process.

    Every page, push and socket re-read of an unfinished job asks; a new client each time opened
    a new Redis connection each time, which cost more than the rest of the estimate
    (bench/push.py).
    """
    import django_rq

    config = settings.RQ_QUEUES[settings.STEMSITE_QUEUE]
    key = repr(sorted(config.items()))
    try:
        queue = _queues.get(key)
        if queue is None:
            queue = _queues[key] = django_rq.get_queue(settings.STEMSITE_QUEUE)
        return max(1, Worker.count(queue=queue))
    except (RedisError, OSError):
        return 1


# The queue (and so its Redis client) per queue configuration: tests override the settings.
_queues: dict[str, Queue] = {}


def estimate_for(job: Job) -> Estimate | None:
    """One job's estimate. A running job's needs only its own progress (and, under 10%, the recent
    speeds), so a worker's progress pushes make no queue simulation; a queued job's needs the
    whole queue ahead of it. None for a finished job."""
    if job.status == Job.Status.RUNNING:
        speeds = {} if job.progress >= 10 else recent_speeds()
        return Estimate(None, _seconds_left(job, speeds, timezone.now()))
    if job.status == Job.Status.QUEUED:
        return estimates().get(job.pk)
    return None


def _seconds_left(job: Job, speeds: dict, now) -> float:
    """A running job's time left: from its own pace once it is 10% done, else from recent speeds."""
    elapsed = (now - job.started_at).total_seconds() if job.started_at else 0
    total = elapsed * 100 / job.progress if job.progress >= 10 else expected_seconds(job, speeds)
    return max(1.0, total - elapsed)


def estimates() -> dict:
    """An Estimate for every running and queued job, simulating the workers taking jobs in order."""
    speeds = recent_speeds()
    now = timezone.now()
    running = list(Job.objects.filter(status=Job.Status.RUNNING).only(*_FIELDS))
    queued = list(
        Job.objects.filter(status=Job.Status.QUEUED).order_by("queued_at").only(*_FIELDS)[:MAX_QUEUE]
    )
    result = {}
    lanes = []
    for job in running:
        left = _seconds_left(job, speeds, now)
        result[job.pk] = Estimate(None, left)
        lanes.append(left)
    workers = worker_count()
    lanes = sorted(lanes)[:workers]
    lanes += [0.0] * (workers - len(lanes))
    heapq.heapify(lanes)
    for position, job in enumerate(queued, start=1):
        start = heapq.heappop(lanes)
        end = start + expected_seconds(job, speeds)
        heapq.heappush(lanes, end)
        result[job.pk] = Estimate(position, end)
    return result


_FIELDS = ("id", "model_name", "options", "duration_seconds", "started_at", "progress", "queued_at", "status")
