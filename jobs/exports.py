"""Where RQ finds mix exports queued before the worker side moved to jobs/background/.

See jobs/tasks.py: RQ imports a queued job's function by the dotted name it stored.
"""

from jobs.background.exports import render_export

__all__ = ["render_export"]
