"""Turning a validated upload into a queued job, with nothing left behind if that fails."""

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.db import transaction

from jobs.audio import AudioInfo
from jobs.models import Job
from jobs.tasks import enqueue_separation


def submit_job(owner, upload: UploadedFile, info: AudioInfo) -> Job:
    """Store the upload, create the row, and enqueue only once the row is committed."""
    job = Job(
        owner=owner,
        original_name=upload.name[:255],
        model_name=settings.STEMSITE_MODEL,
        duration_seconds=info.duration,
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
    return job
