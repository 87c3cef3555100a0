"""The one place that renders a job's live pieces, for the page, htmx and the websocket alike."""

from django.template.loader import render_to_string

from jobs.models import Job

STATUS_TEMPLATE = "jobs/job_detail.html#job-status"
ROW_TEMPLATE = "jobs/job_list.html#job-row"


def job_status_html(job: Job) -> str:
    return render_to_string(STATUS_TEMPLATE, {"job": job})


def job_row_html(job: Job) -> str:
    return render_to_string(ROW_TEMPLATE, {"job": job})
