"""The one place that renders a job's live pieces, for the page, htmx and the websocket alike."""

import time

from django.contrib.humanize.templatetags.humanize import naturaltime
from django.template.loader import render_to_string

from jobs.engine.peaks import PEAKS_PER_SECOND
from jobs.eta import Estimate, estimate_for
from jobs.models import Job, MixExport

STATUS_TEMPLATE = "jobs/job_detail.html#job-status"
ROW_TEMPLATE = "jobs/job_list.html#job-row"
EXPORT_TEMPLATE = "jobs/job_detail.html#mix-export"


def status_context(job: Job, estimate: Estimate | None = None) -> dict:
    if estimate is None and not job.is_finished:
        estimate = estimate_for(job)
    context = {"job": job, "estimate": estimate}
    if job.status == Job.Status.SUCCEEDED:
        context["mixer_stems"] = mixer_stems(job)
    return context


def mixer_stems(job: Job) -> list[dict]:
    """What the player needs per stem (one query): where to stream and download it, and its waveform."""
    return [
        {
            "name": stem.name,
            "label": stem.label,
            "url": f"{stem.get_absolute_url()}?play",
            "download": stem.get_absolute_url(),
            "peaks": stem.peaks,
            "peaks_per_second": PEAKS_PER_SECOND,
            "duration": job.duration_seconds,
        }
        for stem in job.stems.all()
    ]


def export_html(export: MixExport) -> str:
    return render_to_string(EXPORT_TEMPLATE, {"export": export, "job": export.job})


def job_status_html(job: Job, estimate: Estimate | None = None) -> str:
    return render_to_string(STATUS_TEMPLATE, status_context(job, estimate))


def job_row_html(job: Job) -> str:
    """A job's row in its owner's list, for the page and its pushes alike.

    Rows are kept per process by what they show, until their "how long ago" would read
    differently: a list shows the same rows on every visit, and rendering 25 of them (the
    upload's age above all) was most of the job list's time (bench/pages.py). A job's name and
    options never change, so its status and progress key a row.
    """
    now = time.time()
    key = (job.pk, job.status, job.progress)
    kept = _rows.get(key)
    if kept is not None and now < kept[1]:
        return kept[0]
    html = render_to_string(ROW_TEMPLATE, {"job": job, "created": naturaltime(job.created_at)})
    created = job.created_at.timestamp()
    step = _age_step(now - created)
    if step:
        if len(_rows) >= MAX_CACHED_ROWS:
            _rows.clear()
        _rows[key] = (html, created + ((now - created) // step + 1) * step)
    return html


def _age_step(seconds: float) -> int:
    """How often an age of this many seconds reads differently in `naturaltime` ("3 days, 2 hours
    ago" changes hourly): a kept row lives until the next step. Under a minute: never kept."""
    if seconds < 60:
        return 0
    if seconds < 24 * 3600:
        return 60
    if seconds < 14 * 24 * 3600:
        return 3600
    return 24 * 3600


MAX_CACHED_ROWS = 20_000  # about 10 MB of rows
_rows: dict[tuple, tuple[str, float]] = {}
