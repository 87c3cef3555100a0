"""Where RQ finds separations queued before the worker side moved to jobs/background/.

RQ stores a queued job's function as a dotted name and imports it when a worker takes the job, so
a track queued by an earlier version runs after an upgrade under its old name. New jobs are queued
under jobs.background.tasks; nothing else should import from here.
"""

from jobs.background.tasks import job_stopped, separate_job

__all__ = ["job_stopped", "separate_job"]
