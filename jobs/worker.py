"""The RQ worker class stemsite runs: RQ's forking worker, with the model loaded before forks."""

from rq import Worker

from jobs.tasks import fail_lost_job, preload_default_model


class SeparationWorker(Worker):
    def work(self, *args, **kwargs):
        preload_default_model()
        return super().work(*args, **kwargs)

    def handle_work_horse_killed(self, job, retpid, ret_val, rusage):
        """A horse killed outright (OOM killer, SIGKILL) never reaches the task's own handlers."""
        super().handle_work_horse_killed(job, retpid, ret_val, rusage)
        if job.func_name == "jobs.tasks.separate_job" and job.args:
            fail_lost_job(job.args[0])
