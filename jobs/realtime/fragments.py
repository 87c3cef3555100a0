"""The one place that renders a job's live pieces, for the page, htmx and the websocket alike."""

import hashlib
import time

from django.contrib.humanize.templatetags.humanize import naturaltime
from django.template.loader import render_to_string
from django.urls import reverse

from jobs.engine.peaks import PEAKS_PER_SECOND
from jobs.eta import Estimate, estimate_for
from jobs.models import Job, MixExport
from jobs.sharing.links import EXPIRY_LABELS

STATUS_TEMPLATE = "jobs/job_detail.html#job-status"
SHARES_TEMPLATE = "jobs/job_detail.html#share-links"
ROW_TEMPLATE = "jobs/job_list.html#job-row"
EXPORT_TEMPLATE = "jobs/job_detail.html#mix-export"


# What a page shows of a job; a change in any of these is worth sending again.
SHOWN_FIELDS = ("status", "progress", "attempt", "error_message")


def shown_version(job: Job) -> str:
    """A short name for what the job's block shows: the page puts it in its socket's address, so
    the socket does not send back the block the page already has (swapped in at load, it replaced
    the form a person was clicking, and the player)."""
    shown = "\x1f".join(str(getattr(job, name)) for name in SHOWN_FIELDS)
    return hashlib.sha256(shown.encode()).hexdigest()[:16]


def status_context(job: Job, estimate: Estimate | None = None) -> dict:
    if estimate is None and not job.is_finished and not job.duplicate_of_id:
        estimate = estimate_for(job)
    context = {"job": job, "estimate": estimate, "shown_version": shown_version(job)}
    if job.status == Job.Status.SUCCEEDED:
        context["mixer_stems"] = mixer_stems(job)
        context["mixer_track"] = mixer_track(job)
        context["share_links"] = list(job.share_links.all())
        context["share_expiries"] = list(EXPIRY_LABELS.items())
    return context


def mixer_track(job: Job) -> dict:
    """What the practice tools need of the whole track: its tempo and beats (the click), its key."""
    return {"tempo_bpm": job.tempo_bpm, "beats": job.beats, "key": job.key}


def mixer_stems(job: Job, share_token: str = "", downloads: bool = True) -> list[dict]:
    """What the player needs per stem (one query): where to stream and download it, and its waveform.
    On a share page (`share_token`) the files come through the link's own URLs, and a download
    only where the owner allowed them."""
    stems = []
    for stem in job.stems.all():
        if share_token:
            url = reverse("share_play", args=[share_token, stem.name])
            download = reverse("share_stem", args=[share_token, stem.name]) if downloads else ""
        else:
            url, download = f"{stem.get_absolute_url()}?play", stem.get_absolute_url()
        stems.append(
            {
                "name": stem.name,
                "label": stem.label,
                "url": url,
                "download": download,
                "peaks": stem.peaks,
                "peaks_per_second": PEAKS_PER_SECOND,
                "duration": job.duration_seconds,
            }
        )
    return stems


def export_html(export: MixExport) -> str:
    return render_to_string(EXPORT_TEMPLATE, {"export": export, "job": export.job})


def job_status_html(job: Job, estimate: Estimate | None = None) -> str:
    return render_to_string(STATUS_TEMPLATE, status_context(job, estimate))


def job_row_html(job: Job) -> str:
    """A job's row in its owner's list, for the page and its pushes alike.

    Rows are kept per process by what they show, until their "how long ago" would read
    differently: a list shows the same rows on every visit, and rendering 25 of them (the
    upload's age above all) was most of the job list's time (bench/pages.py). A job's name and
    options never change, so its status, progress and measured tempo and key (which a finished job
    can gain later: manage.py analyse_tracks) key a row.
    """
    now = time.time()
    key = (job.pk, job.status, job.progress, job.analysed_at)
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
