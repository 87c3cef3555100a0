"""The one place that renders a job's live pieces, for the page, htmx and the websocket alike."""

from django.template.loader import render_to_string

from jobs.engine.peaks import PEAKS_PER_SECOND
from jobs.eta import Estimate, estimates
from jobs.models import Job, MixExport

STATUS_TEMPLATE = "jobs/job_detail.html#job-status"
ROW_TEMPLATE = "jobs/job_list.html#job-row"
EXPORT_TEMPLATE = "jobs/job_detail.html#mix-export"


def status_context(job: Job, estimate: Estimate | None = None) -> dict:
    if estimate is None and not job.is_finished:
        estimate = estimates().get(job.pk)
    context = {"job": job, "estimate": estimate}
    if job.status == Job.Status.SUCCEEDED:
        context["mixer_stems"] = mixer_stems(job)
        context["mixer_track"] = {"tempo_bpm": job.tempo_bpm, "beats": job.beats, "key": job.key}
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
    return render_to_string(ROW_TEMPLATE, {"job": job})
