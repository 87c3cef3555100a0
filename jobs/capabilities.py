"""What the separation workers can run, as they report it: which models load, which precisions.

Each separation worker writes a report into its own RQ worker hash when it starts
(jobs/background/worker.py), so the report lives and expires with the worker. The upload form, the API and
health read the reports of the live workers here, at most once per STEMSITE_QUEUE_CHECK_SECONDS
per process. Before any worker has reported, the site's own settings say which models it has and
only full precision is offered; nothing is refused then, since a worker may still be starting.
"""

import json
import logging
import threading
import time
from dataclasses import dataclass

import redis
from django.conf import settings
from rq import Queue, Worker

from jobs.catalog import offered_models
from jobs.options import MODELS

logger = logging.getLogger(__name__)

REPORT_FIELD = "stemsite_report"
REDIS_TIMEOUT = 1.0


@dataclass(frozen=True)
class Capabilities:
    models: tuple[str, ...]  # offered, in the form's order
    precisions: tuple[str, ...]  # "full", and "half" when every reporting worker runs it natively
    half_arithmetic: str  # e.g. "bf16", when half is offered
    problems: tuple[str, ...]  # sentences: a model the workers were told to load but cannot
    reported: bool  # at least one live separation worker has reported

    @property
    def unavailable(self) -> str:
        """A sentence when no model can run at all: uploads are refused until this is fixed."""
        if self.models:
            return ""
        detail = self.problems[0] if self.problems else "The separation workers have no model they can load."
        return f"Separation is unavailable on this site right now. {detail}"

    def default_model(self) -> str:
        if settings.STEMSITE_MODEL in self.models:
            return settings.STEMSITE_MODEL
        return self.models[0] if self.models else settings.STEMSITE_MODEL

    def default_precision(self) -> str:
        return settings.STEMSITE_PRECISION if settings.STEMSITE_PRECISION in self.precisions else "full"


def from_reports(reports: list[dict]) -> Capabilities:
    """The site's capabilities from its live separation workers' reports (none: its settings)."""
    if not reports:
        models = offered_models(settings.STEMSITE_MODEL_REPO)
        return Capabilities(tuple(models), ("full",), "", (), reported=False)
    names = set().union(*(report.get("models", []) for report in reports))
    halves = {report.get("half") for report in reports}
    precisions = ("full", "half") if None not in halves else ("full",)
    problems = []
    for report in reports:
        problem = report.get("model_error", "")
        if problem and problem not in problems:
            problems.append(problem)
    return Capabilities(
        models=tuple(name for name in MODELS if name in names),
        precisions=precisions,
        half_arithmetic="/".join(sorted(halves)) if "half" in precisions else "",
        problems=tuple(problems),
        reported=True,
    )


def live_reports(connection: redis.Redis) -> list[dict]:
    """The reports of the workers listening on the separation queue now."""
    reports = []
    for worker in Worker.all(queue=Queue(settings.STEMSITE_QUEUE, connection=connection)):
        raw = connection.hget(worker.key, REPORT_FIELD)
        if raw:
            try:
                reports.append(json.loads(raw))
            except ValueError:
                logger.warning("Worker %s left an unreadable report", worker.name)
    return reports


def site_capabilities() -> Capabilities:
    """The current capabilities; with Redis unreachable, what the settings say (the banner about the
    queue says the rest)."""
    return _cache.get()


class _Cache:
    """One read of the reports per STEMSITE_QUEUE_CHECK_SECONDS per process; web threads share it."""

    def __init__(self):
        self.lock = threading.Lock()
        self.url = None
        self.client = None
        self.read_at = float("-inf")
        self.reports: list[dict] = []

    def get(self) -> Capabilities:
        url = settings.RQ_QUEUES[settings.STEMSITE_QUEUE]["URL"]
        with self.lock:
            if url != self.url:
                self.client = redis.Redis.from_url(
                    url, socket_timeout=REDIS_TIMEOUT, socket_connect_timeout=REDIS_TIMEOUT
                )
                self.url, self.read_at = url, float("-inf")
            now = time.monotonic()
            if now - self.read_at >= settings.STEMSITE_QUEUE_CHECK_SECONDS:
                try:
                    self.reports = live_reports(self.client)
                except (redis.RedisError, OSError):
                    self.reports = []
                self.read_at = now
            reports = self.reports
        return from_reports(reports)


_cache = _Cache()
