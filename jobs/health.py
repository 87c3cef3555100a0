"""The site's health: can it take and run jobs right now? Every check answers within about 2 s."""

from dataclasses import dataclass, field

import redis
from django.conf import settings
from django.db import DatabaseError, connection
from rq import Queue, Worker

REDIS_TIMEOUT = 1.5  # seconds, to connect and for each command


@dataclass
class Health:
    """What was checked; `problems` holds one sentence per thing that is not usable."""

    database: bool = False
    redis: bool = False
    workers: int = 0
    queue_depth: int | None = None
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
            "problems": self.problems,
        }


def check_health() -> Health:
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
        queue = Queue(settings.STEMSITE_QUEUE, connection=client)
        health.queue_depth = queue.count
        health.workers = Worker.count(queue=queue)
        health.redis = True
    except (redis.RedisError, OSError) as error:
        health.problems.append(f"Redis cannot be reached: {error}")
    finally:
        client.close()
    if health.redis and health.workers == 0:
        health.problems.append("No worker is running: queued jobs will not start.")
    return health
