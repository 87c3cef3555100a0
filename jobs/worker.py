"""The RQ worker class stemsite runs: RQ's forking worker, with models loaded before forks."""

import logging

from redis.exceptions import RedisError
from rq import Worker

from jobs.tasks import MSG_WORKER_SHUT_DOWN, fail_lost_job, preload_model

logger = logging.getLogger(__name__)


class SeparationWorker(Worker):
    """Each job runs in a forked work horse (isolated, killable); the parent keeps the models.

    The parent loads a job's model just before forking it, so the horse inherits it warm and the
    parent's bounded cache serves every later job of that model.
    """

    def work(self, *args, **kwargs):
        from django.conf import settings

        preload_model(settings.STEMSITE_MODEL)
        return super().work(*args, **kwargs)

    def execute_job(self, job, queue):
        if job.meta.get("model"):
            preload_model(job.meta["model"])
        return super().execute_job(job, queue)

    def handle_work_horse_killed(self, job, retpid, ret_val, rusage):
        """A horse killed outright (OOM killer, SIGKILL) never reaches the task's own handlers."""
        super().handle_work_horse_killed(job, retpid, ret_val, rusage)
        if job.func_name == "jobs.tasks.separate_job" and len(job.args) == 2:
            fail_lost_job(*job.args)

    def request_force_stop(self, signum, frame):
        """A second SIGTERM/SIGINT kills the horse (cold shutdown); RQ would leave the row running."""
        job = None
        if self.horse_pid:
            try:
                job = self.get_current_job()
            except RedisError as error:
                logger.warning("Cold shutdown: could not read the current job: %s", error)
        try:
            super().request_force_stop(signum, frame)  # returns when it ignores a repeated signal
        except SystemExit:
            if job is not None and job.func_name == "jobs.tasks.separate_job" and len(job.args) == 2:
                fail_lost_job(*job.args, message=MSG_WORKER_SHUT_DOWN)
            raise
