"""The RQ worker class stemsite runs: RQ's forking worker with the model loaded before forks."""

from rq import Worker

from jobs.tasks import preload_default_model


class SeparationWorker(Worker):
    def work(self, *args, **kwargs):
        preload_default_model()
        return super().work(*args, **kwargs)
