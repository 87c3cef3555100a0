"""The site's health: can it take and run jobs right now? Every check answers within about 2 s."""

from dataclasses import dataclass, field

import redis
from django.conf import settings
from django.db import DatabaseError, connection
from rq import Queue, Worker

from jobs.capabilities import from_reports, live_reports

REDIS_TIMEOUT = 1.5  # seconds, to connect and for each command


@dataclass
class QueueHealth:
    """One RQ queue: jobs waiting in it and workers listening to it."""

    depth: int
    workers: int


@dataclass
class Health:
    """What was checked; `problems` holds one sentence per thing that is not usable."""

    database: bool = False
    redis: bool = False
    workers: int = 0
    queue_depth: int | None = None
    queues: dict[str, QueueHealth] = field(default_factory=dict)
    models: list[str] = field(default_factory=list)
    precisions: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def as_dict(self) -> dict:
        return {
            "status": "ok" if self.ok else "unavailable",
            "database": "ok" if self.database else "unavailable",
            "redis": "ok" if self.redis else "unavailable",
            "workers": self.workers,
            "queue_depth": self.queue_depth,
            "queues": {name: {"depth": q.depth, "workers": q.workers} for name, q in self.queues.items()},
            "models": self.models,
            "precisions": self.precisions,
            "problems": self.problems,
        }


def check_health() -> Health:
    """`workers` and `queue_depth` count every queue; `queues` has them per queue. A queue that no
    worker listens to is a problem of its own: its jobs would wait forever. So is a model the
    separation workers were told to load and cannot: `models` and `precisions` are what they
    report they can run."""
    health = Health()
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        health.database = True
    except DatabaseError as error:
        health.problems.append(f"The database cannot be reached: {error}")
    url = settings.RQ_QUEUES[settings.STEMSITE_QUEUE]["URL"]
    client = redis.Redis.from_url(url, socket_timeout=REDIS_TIMEOUT, socket_connect_timeout=REDIS_TIMEOUT)
    try:
        client.ping()
        for name in settings.RQ_QUEUES:
            queue = Queue(name, connection=client)
            health.queues[name] = QueueHealth(depth=queue.count, workers=Worker.count(queue=queue))
        health.queue_depth = sum(queue.depth for queue in health.queues.values())
        health.workers = Worker.count(connection=client)
        capabilities = from_reports(live_reports(client))
        health.models, health.precisions = list(capabilities.models), list(capabilities.precisions)
        health.problems.extend(
            f"The separation workers cannot load their model: {problem}" for problem in capabilities.problems
        )
        health.redis = True
    except (redis.RedisError, OSError) as error:
        health.problems.append(f"Redis cannot be reached: {error}")
    finally:
        client.close()
    imports_off = settings.STEMSITE_URL_IMPORT == "off"
    for name, queue in health.queues.items() if health.redis else ():
        if queue.workers == 0 and not (name == settings.STEMSITE_IMPORT_QUEUE and imports_off):
            health.problems.append(
                f"No worker is running on the {name} queue: {_waiting_on(name)} will not start."
            )
    return health


def _waiting_on(queue: str) -> str:
    if queue == settings.STEMSITE_SHORT_QUEUE:
        return "mix exports and webhook deliveries"
    if queue == settings.STEMSITE_IMPORT_QUEUE:
        return "imports from links"
    return "separations"
