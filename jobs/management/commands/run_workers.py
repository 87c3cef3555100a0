"""Run and supervise the site's RQ workers, and the reconciler, in one foreground process.

`manage.py rqworker` quits on an unhandled exception (Redis restarting mid-job is one), and a
bare process manager then stops or forgets it. This command keeps workers running on the queues
named by --queues (by default --workers on separations, one on short and one on imports; `name=N`
gives a queue its own count): it restarts any that exits (with a growing delay while it keeps failing, e.g.
Redis is down), runs the reconciler every STEMSITE_RECONCILE_INTERVAL seconds, moves delayed jobs
(webhook retries) of every queue onto it when they are due, as RQ's scheduler does, and on
SIGTERM or SIGINT asks every worker for a warm shutdown (the running job finishes) and waits for
them; a second signal is forwarded too, which makes RQ stop the running jobs.

The reconciler and the scheduler each act under Redis locks, so several supervisors are safe, but
one is enough: on every other machine, --workers-only runs the workers alone.
"""

import contextlib
import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass

import django_rq
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import close_old_connections
from redis.exceptions import RedisError
from rq.scheduler import RQScheduler

from jobs import tracing
from jobs.background.reconcile import reconcile
from jobs.background.worker import die_with_parent
from jobs.metrics import process_exited

logger = logging.getLogger(__name__)

FIRST_RESTART_DELAY = 1.0
MAX_RESTART_DELAY = 15.0
STABLE_AFTER = 60.0  # a worker that ran this long without exiting starts its backoff afresh
TICK = 0.5


@dataclass
class Slot:
    """One worker the supervisor keeps running."""

    queue: str
    number: int
    process: subprocess.Popen | None = None
    started_at: float = 0.0
    restart_at: float = 0.0
    delay: float = FIRST_RESTART_DELAY


class Command(BaseCommand):
    help = (
        "Run RQ workers on each chosen queue, restart them when they exit, and (unless --workers-only) "
        "reconcile jobs and move due delayed jobs onto their queues."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--workers",
            type=int,
            default=1,
            help="worker processes per queue without its own count (default 1)",
        )
        short, imports = settings.STEMSITE_SHORT_QUEUE, settings.STEMSITE_IMPORT_QUEUE
        default = f"{settings.STEMSITE_QUEUE},{short}=1,{imports}=1"
        parser.add_argument(
            "--queues",
            default=default,
            help=f"comma-separated queues; `name=N` gives one its own count (default {default})",
        )
        parser.add_argument(
            "--workers-only",
            action="store_true",
            help="run no reconciler and no scheduler: for every machine but the one that runs them",
        )

    def handle(self, *args, workers: int, queues: str, workers_only: bool, **options):
        if workers < 1:
            raise CommandError("--workers must be at least 1.")
        counts = parse_queues(queues, workers)
        if not workers_only:
            tracing.setup("reconciler")  # each worker sets up its own (jobs/background/worker.py)
        self.signals = 0
        self.redis_down = False
        self.scheduler = None
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        slots = [Slot(queue, number) for queue, count in counts.items() for number in range(1, count + 1)]
        next_reconcile = time.monotonic()
        duties = "workers only" if workers_only else "with the reconciler and scheduler"
        chosen = ", ".join(f"{count} on {queue}" for queue, count in counts.items())
        logger.info("Supervising workers: %s; %s", chosen, duties)
        forwarded = 0
        while True:
            now = time.monotonic()
            if self.signals > forwarded:
                forwarded = self.signals
                self._forward(slots, cold=forwarded > 1)
            if self.signals:
                if all(slot.process is None or slot.process.poll() is not None for slot in slots):
                    logger.info("All workers stopped")
                    self._release_scheduler()
                    return
            else:
                for slot in slots:
                    self._keep_running(slot, now)
                if not workers_only:
                    if now >= next_reconcile:
                        self._reconcile()
                        next_reconcile = time.monotonic() + settings.STEMSITE_RECONCILE_INTERVAL
                    self._enqueue_due_jobs()
            time.sleep(TICK)

    def _on_signal(self, signum, frame) -> None:
        self.signals += 1

    def _forward(self, slots: list[Slot], cold: bool) -> None:
        kind = "cold (running jobs are stopped)" if cold else "warm (running jobs finish first)"
        logger.info("Shutting down workers: %s", kind)
        for slot in slots:
            if slot.process is not None and slot.process.poll() is None:
                slot.process.send_signal(signal.SIGTERM)

    def _keep_running(self, slot: Slot, now: float) -> None:
        process = slot.process
        if process is not None and process.poll() is None:
            return
        if process is not None:
            ran = now - slot.started_at
            if ran >= STABLE_AFTER:
                slot.delay = FIRST_RESTART_DELAY
            slot.restart_at = now + slot.delay
            logger.warning(
                "Worker %s-%s (pid %s) exited with %s after %.0f s; restarting in %.0f s",
                slot.queue, slot.number, process.pid, _describe_exit(process.returncode), ran, slot.delay,
            )  # fmt: skip
            slot.delay = min(MAX_RESTART_DELAY, slot.delay * 2)
            process_exited(process.pid)
            slot.process = None
        if now < slot.restart_at:
            return
        supervisor = os.getpid()
        slot.process = subprocess.Popen(
            [sys.executable, str(settings.BASE_DIR / "manage.py"), "rqworker", slot.queue],
            # Its own process group: a Ctrl-C in the terminal, or honcho's signal to our group,
            # reaches the supervisor only, which forwards exactly one warm-shutdown signal. If the
            # supervisor itself is killed, its workers and their jobs die too (nothing is left
            # running unsupervised) and the reconciler queues those jobs again.
            process_group=0,
            preexec_fn=lambda: die_with_parent(supervisor),
        )
        slot.started_at = now
        logger.info("Started worker %s-%s (pid %s)", slot.queue, slot.number, slot.process.pid)

    def _enqueue_due_jobs(self) -> None:
        """RQ's scheduler, run here rather than forked inside a worker: jobs queued with `enqueue_in`
        (webhook retries) reach their queue when due, for every queue whatever --queues says. A Redis
        lock per queue lets one scheduler act on it at a time.
        """
        try:
            if self.scheduler is None:
                self.scheduler = RQScheduler(
                    list(settings.RQ_QUEUES), connection=django_rq.get_connection(settings.STEMSITE_QUEUE)
                )
            if self.scheduler.acquire_locks():
                self.scheduler.enqueue_scheduled_jobs()
        except (RedisError, OSError) as error:
            logger.debug("Scheduler cannot reach Redis: %s", error)  # the reconciler reports it

    def _release_scheduler(self) -> None:
        if self.scheduler is None:
            return
        with contextlib.suppress(RedisError, OSError):  # else the lock expires on its own
            self.scheduler.release_locks()

    def _reconcile(self) -> None:
        close_old_connections()
        try:
            result = reconcile()
        except (RedisError, OSError) as error:
            if not self.redis_down:
                logger.warning(
                    "Reconciler cannot reach Redis; retrying every %s s: %s",
                    settings.STEMSITE_RECONCILE_INTERVAL,
                    error,
                )
            self.redis_down = True
            return
        if self.redis_down:
            logger.info("Reconciler reaches Redis again")
            self.redis_down = False
        if result.changed:
            logger.info(
                "Reconciled jobs: %s queued again, %s lost runs recovered, %s failed",
                len(result.requeued), len(result.recovered), len(result.failed),
            )  # fmt: skip
        if result.exports_changed:
            logger.info(
                "Reconciled mix exports: %s queued again, %s failed",
                len(result.exports_requeued), len(result.exports_failed),
            )  # fmt: skip
        if result.downloads_changed:
            logger.info(
                "Reconciled imports: %s downloads started again, %s failed",
                len(result.downloads_recovered), len(result.downloads_failed),
            )  # fmt: skip
        if result.events_requeued:
            logger.info("Reconciled webhook events: %s queued again", len(result.events_requeued))


def parse_queues(value: str, workers: int) -> dict[str, int]:
    """Worker count by queue from a --queues value (`separations,short=1`); `workers` where none is
    given. CommandError says what is wrong with it."""
    known = ", ".join(settings.RQ_QUEUES)
    counts = {}
    for item in filter(None, (part.strip() for part in value.split(","))):
        name, _, count = (piece.strip() for piece in item.partition("="))
        if name not in settings.RQ_QUEUES:
            raise CommandError(f"Unknown queue {name!r} in --queues; the site's queues are: {known}.")
        if name in counts:
            raise CommandError(f"The {name} queue is named twice in --queues.")
        if count and not (count.isdigit() and int(count) >= 1):
            raise CommandError(f"--queues: {item!r} needs a whole number of workers of at least 1.")
        counts[name] = int(count) if count else workers
    if not counts:
        raise CommandError(f"--queues needs at least one queue; the site's queues are: {known}.")
    return counts


def _describe_exit(code: int) -> str:
    if code < 0:
        return f"signal {signal.Signals(-code).name}"
    return f"code {code}"
