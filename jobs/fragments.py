"""The one place that renders a job's live pieces, for the page, htmx and the websocket alike."""

from django.template.loader import render_to_string

from jobs.eta import Estimate, estimates
from jobs.models import Job

STATUS_TEMPLATE = "jobs/job_detail.html#job-status"
ROW_TEMPLATE = "jobs/job_list.html#job-row"


def status_context(job: Job, estimate: Estimate | None = None) -> dict:
    if estimate is None and not job.is_finished:
        estimate = estimates().get(job.pk)
    return {"job": job, "estimate": estimate}


def job_status_html(job: Job, estimate: Estimate | None = None) -> str:
    return render_to_string(STATUS_TEMPLATE, status_context(job, estimate))


def job_row_html(job: Job) -> str:
    return render_to_string(ROW_TEMPLATE, {"job": job})
