"""The RQ worker class stemsite runs on every queue: RQ's forking worker, with models loaded before forks."""

import contextlib
import ctypes
import json
import logging
import os
import signal
from collections.abc import Callable

from django.conf import settings
from redis.exceptions import RedisError
from rq import Worker
from rq.exceptions import InvalidJobOperation
from rq.job import JobStatus

from jobs import tracing
from jobs.background.exports import fail_lost_export
from jobs.background.imports import MSG_DOWNLOAD_SHUT_DOWN, fail_lost_import
from jobs.background.tasks import (
    MSG_WORKER_SHUT_DOWN,
    fail_lost_job,
    model_span,
    preload_model,
    separation_threads,
)
from jobs.capabilities import REPORT_FIELD
from jobs.catalog import offered_models
from jobs.logs import job_context
from jobs.metrics import observe_finished_job

logger = logging.getLogger(__name__)

PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
# The dotted names RQ stores with queued separations and exports: today's, and those of jobs queued
# by a version before jobs/background/ existed (jobs/tasks.py and jobs/exports.py keep them running).
SEPARATION_TASKS = ("jobs.background.tasks.separate_job", "jobs.tasks.separate_job")
EXPORT_TASKS = ("jobs.background.exports.render_export", "jobs.exports.render_export")
IMPORT_TASKS = ("jobs.background.imports.import_track",)
DELIVERY_TASKS = ("jobs.webhooks.deliver_event",)


class SeparationWorker(Worker):
    """Each job runs in a forked work horse (isolated, killable); the parent keeps the models.

    The parent records each finished separation's metrics (jobs.metrics), after its horse ended.

    The parent loads a job's model just before forking it, so the horse inherits it warm and the
    parent's bounded cache serves every later job of that model. A worker of the separation queue
    loads the default model at start, gets its engine ready (prepare_engine) and reports what it
    can run in its RQ worker hash (jobs/capabilities.py); one serving only the short queue (mix
    exports, webhook deliveries) never loads a model, so it stays small.

    Its timings come from settings so that a dead worker is noticed within seconds: the parent
    heartbeats every STEMSITE_JOB_MONITORING_INTERVAL while a job runs (the reconciler reads that
    heartbeat), and RQ's own clean-up of abandoned jobs runs every
    STEMSITE_WORKER_MAINTENANCE_INTERVAL instead of every 10 minutes.

    With tracing on (jobs/tracing.py), the parent holds each job's attempt span, continuing the
    trace that queued it, and ends it when the horse is done, however it ended; the horse's spans
    are its children, and the horse exports them before it exits. Log lines name the job.
    """

    def __init__(self, *args, **kwargs):
        kwargs["worker_ttl"] = settings.STEMSITE_WORKER_TTL
        kwargs["job_monitoring_interval"] = settings.STEMSITE_JOB_MONITORING_INTERVAL
        kwargs["maintenance_interval"] = settings.STEMSITE_WORKER_MAINTENANCE_INTERVAL
        super().__init__(*args, **kwargs)
        self._parent_pid = os.getpid()
        self._running_job = None
        self._attempt_span = None
        self.report = None

    def work(self, *args, **kwargs):
        tracing.setup("worker")
        # torch and demucs are imported once here, not in every forked job (exports encode with
        # them too); importing starts no threads, so forking stays safe.
        import jobs.engine.separation  # noqa: F401

        if settings.STEMSITE_QUEUE in self.queue_names():
            self.report = separation_report(settings.STEMSITE_MODEL)
        return super().work(*args, **kwargs)

    def register_birth(self, *args, **kwargs):
        super().register_birth(*args, **kwargs)
        if self.report is not None:
            self.connection.hset(self.key, REPORT_FIELD, json.dumps(self.report))

    def execute_job(self, job, queue):
        with job_context(job.meta.get("job", "")), tracing.rq_attempt(job, *_attempt_span(job)) as span:
            self._attempt_span = span
            if job.meta.get("model"):
                with tracing.within(span), model_span(job.meta["model"]):
                    preload_model(job.meta["model"])
            self._parent_pid = os.getpid()
            self._running_job = job
            try:
                return super().execute_job(job, queue)
            finally:
                self._running_job = None
                self._attempt_span = None
                if span is not None:
                    _record_outcome(span, job)
                if is_separation(job):
                    observe_finished_job(*job.args)

    def fork_work_horse(self, job, queue):
        """The horse starts inside the attempt's span; this process keeps heartbeating outside it."""
        with tracing.within(self._attempt_span):
            return super().fork_work_horse(job, queue)

    def main_work_horse(self, job, queue):
        """The horse dies with its parent, so an orphan can never finish a job declared lost."""
        die_with_parent(self._parent_pid)
        return super().main_work_horse(job, queue)

    def perform_job(self, job, queue):
        """In the horse: its spans are exported before it exits (RQ ends it with os._exit)."""
        try:
            return super().perform_job(job, queue)
        finally:
            tracing.flush()

    def handle_work_horse_killed(self, job, retpid, ret_val, rusage):
        """A horse killed outright (OOM killer, SIGKILL) never reaches the task's own handlers."""
        super().handle_work_horse_killed(job, retpid, ret_val, rusage)
        if is_separation(job):
            fail_lost_job(*job.args)
        elif job.func_name in EXPORT_TASKS and len(job.args) == 1:
            fail_lost_export(*job.args)
        elif is_import(job):
            fail_lost_import(*job.args)

    def request_force_stop(self, signum, frame):
        """A second SIGTERM/SIGINT kills the horse (cold shutdown); RQ would leave the row running."""
        # The job as this process started it, not read from Redis: the signal may have cut a Redis
        # call short, and reading on that connection could fail and leave the row running.
        job = self._running_job if self.horse_pid else None
        # Further stop signals wait until this one is handled: a supervisor or a held Ctrl+C keeps
        # sending, and a nested handler would wait on the reaped horse and cut the row's update.
        handlers = {sig: signal.signal(sig, signal.SIG_IGN) for sig in STOP_SIGNALS}
        try:
            super().request_force_stop(signum, frame)  # returns when it ignores a repeated signal
        except SystemExit:
            if job is not None and is_separation(job):
                fail_lost_job(*job.args, message=MSG_WORKER_SHUT_DOWN)
            elif job is not None and is_import(job):
                fail_lost_import(*job.args, message=MSG_DOWNLOAD_SHUT_DOWN)
            raise
        for sig, handler in handlers.items():
            signal.signal(sig, handler)


def is_separation(job) -> bool:
    return job.func_name in SEPARATION_TASKS and len(job.args) == 2


def is_import(job) -> bool:
    return job.func_name in IMPORT_TASKS and len(job.args) == 2


def _attempt_span(job) -> tuple[str, dict]:
    """The name and attributes of an RQ job's attempt span, by what it runs."""
    attributes = {"stemsite.job.id": job.meta.get("job", "")}
    if is_separation(job):
        return "separation", {**attributes, "stemsite.job.attempt": job.args[1]}
    if is_import(job):
        return "import", {**attributes, "stemsite.job.attempt": job.args[1]}
    if job.func_name in EXPORT_TASKS:
        return "mix export", {**attributes, "stemsite.export.id": str(job.args[0])}
    if job.func_name in DELIVERY_TASKS:
        return "webhook delivery", {**attributes, "stemsite.webhook.event": str(job.args[1])}
    return job.func_name, attributes


def _record_outcome(span, job) -> None:
    """The attempt span fails with the RQ job: raised, stopped, or its horse killed."""
    with contextlib.suppress(RedisError, OSError, InvalidJobOperation):
        status = job.get_status(refresh=True)
        if status in (JobStatus.FAILED, JobStatus.STOPPED):
            result = job.latest_result()
            reason = (result.exc_string or "").strip().splitlines()[-1:] if result else []
            tracing.failed(reason[0] if reason else f"The job ended {JobStatus(status).value}.", span)


def separation_report(name: str) -> dict:
    """Load the site's model, get its engine ready, and say what this worker can run.

    The engine's preparation (converting the model for OpenVINO the first time, asking the
    hardware for half precision) runs in a child process: CUDA and the runtimes' thread pools
    must never start in a parent that forks work horses.
    """
    error = preload_model(name)
    engine = in_child(prepare_engine, name) or {}
    models = offered_models(settings.STEMSITE_MODEL_REPO) if settings.STEMSITE_MODEL_REPO or not error else []
    report = {
        "model": name,
        "model_error": error,
        "models": [model for model in models if model != name or not error],
        "device": engine.get("device", ""),
        "half": engine.get("half"),
        "engines": engine.get("engines", {}),
    }
    logger.info("Separation worker ready: %s", _describe(report))
    return report


def _describe(report: dict) -> str:
    engines = ", ".join(
        f"{precision} precision on {choice['engine']} ({choice['arithmetic']})"
        for precision, choice in report["engines"].items()
    )
    half = "" if report["half"] else "; no native half precision on this hardware"
    models = ", ".join(report["models"]) or "none"
    return f"models {models}; {engines or 'PyTorch'} on {report['device'] or 'an unknown device'}{half}"


def prepare_engine(name: str) -> dict:
    """In a child: the model (inherited, warm) converted and compiled as this hardware allows."""
    import torch

    from jobs.engine import execution, separation

    torch.set_num_threads(separation_threads())
    device = separation.resolve_device(settings.STEMSITE_DEVICE)
    try:
        model = separation.load_model(name, settings.STEMSITE_MODEL_REPO, settings.STEMSITE_MODEL_CACHE_SIZE)
    except separation.ModelUnavailable:
        return {"device": device, "half": execution.half_arithmetic(device), "engines": {}}
    cache = str(settings.STEMSITE_ENGINE_CACHE_DIR)
    return execution.prepare(model, settings.STEMSITE_ENGINE, device, cache, separation_threads())


def in_child(function: Callable[..., dict], *args) -> dict | None:
    """`function(*args)` in a forked child process; its JSON result, or None if it failed (logged)."""
    read_end, write_end = os.pipe()
    parent = os.getpid()
    pid = os.fork()
    if pid == 0:  # the child: never returns
        os.close(read_end)
        die_with_parent(parent)
        status = 1
        try:
            with os.fdopen(write_end, "w") as pipe:
                json.dump(function(*args), pipe)
            status = 0
        except BaseException:
            logger.exception("Preparing the separation engine failed")
        finally:
            os._exit(status)
    os.close(write_end)
    with os.fdopen(read_end) as pipe:
        output = pipe.read()
    _, status = os.waitpid(pid, 0)
    if os.waitstatus_to_exitcode(status) != 0 or not output:
        return None
    return json.loads(output)


def die_with_parent(parent_pid: int, sig: int = signal.SIGKILL) -> None:
    """Ask the kernel to send `sig` to this process when its parent exits (Linux; elsewhere a no-op).

    The parent may already have died between fork() and prctl(): then nothing would ever signal
    us, so exit at once.
    """
    prctl = getattr(ctypes.CDLL(None, use_errno=True), "prctl", None)
    if prctl is None or prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) != 0:
        return
    if os.getppid() != parent_pid:
        os._exit(1)
