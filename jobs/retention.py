"""Retention: finished jobs older than the deployment's limit are deleted with all their files."""

from dataclasses import dataclass
from datetime import timedelta

from django.core.files.storage import Storage
from django.utils import timezone

from jobs.models import Job


@dataclass(frozen=True)
class PurgeReport:
    jobs: int
    freed_bytes: int


def expired_jobs(days: int):
    """Finished jobs (succeeded, failed, canceled) that finished more than `days` days ago."""
    cutoff = timezone.now() - timedelta(days=days)
    return Job.objects.filter(status__in=Job.FINISHED, finished_at__lt=cutoff).order_by("finished_at")


def stored_bytes(job: Job) -> int:
    """Bytes under the job's folder in storage: the upload, stems, previews, mixes and leftovers."""
    return _folder_bytes(job.input_file.storage, f"jobs/{job.pk}")


def purge_expired(days: int, dry_run: bool = False) -> PurgeReport:
    """Delete (or, with `dry_run`, only count) every expired job and what it stores."""
    count = freed = 0
    for job in expired_jobs(days).iterator():
        freed += stored_bytes(job)
        count += 1
        if not dry_run:
            job.delete_with_files()
    return PurgeReport(count, freed)


def _folder_bytes(storage: Storage, folder: str) -> int:
    try:
        folders, files = storage.listdir(folder)
    except FileNotFoundError:
        return 0
    total = sum(storage.size(f"{folder}/{name}") for name in files)
    return total + sum(_folder_bytes(storage, f"{folder}/{name}") for name in folders)
