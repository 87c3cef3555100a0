"""Turning validated uploads into queued jobs, with nothing left behind if that fails."""

from dataclasses import dataclass

from django.db import transaction

from jobs.forms import AcceptedFile
from jobs.models import Job, upload_label
from jobs.options import JobOptions
from jobs.tasks import enqueue_separation


@dataclass(frozen=True)
class Submission:
    job: Job
    reused: bool  # the same audio with the same options was already separated (or is on its way)


def submit_job(owner, accepted: AcceptedFile, options: JobOptions) -> Submission:
    """Reuse an identical job of this owner, or store the upload and queue a new one on commit."""
    settings_json = {key: value for key, value in options.as_dict().items() if key != "model"}
    existing = (
        Job.objects.filter(
            owner=owner,
            content_hash=accepted.content_hash,
            model_name=options.model,
            options=settings_json,
            status__in=(Job.Status.QUEUED, Job.Status.RUNNING, Job.Status.SUCCEEDED),
        )
        .order_by("-created_at")
        .first()
    )
    if existing is not None:
        return Submission(existing, reused=True)
    upload = accepted.upload
    job = Job(
        owner=owner,
        original_name=upload_label(upload.name),
        content_hash=accepted.content_hash,
        model_name=options.model,
        options=settings_json,
        duration_seconds=accepted.info.duration,
    )
    try:
        with transaction.atomic():
            job.input_file.save(upload.name, upload, save=False)
            job.save()
            transaction.on_commit(lambda: enqueue_separation(job))
    except BaseException:
        if job.input_file.name:
            job.input_file.delete(save=False)
        raise
    return Submission(job, reused=False)
