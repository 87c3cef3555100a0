"""Per-user limits on uploads: how often, how many at once, and how much storage in all."""

from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db.models import Sum
from django.utils import timezone

from jobs.models import Job, Stem

MB = 1024 * 1024


class LimitExceeded(Exception):
    """An upload the user's limits do not allow; the message is a sentence for the upload form."""


@dataclass(frozen=True)
class Usage:
    """What a user has now, next to what the site allows (a limit of 0 means none)."""

    uploads_last_hour: int
    active_jobs: int
    storage_bytes: int
    uploads_per_hour: int
    max_active_jobs: int
    storage_quota_bytes: int

    @property
    def storage_percent(self) -> int:
        if not self.storage_quota_bytes:
            return 0
        return min(100, round(100 * self.storage_bytes / self.storage_quota_bytes))


def usage_for(user, excluding: Job | None = None) -> Usage:
    """`excluding`: a job not to count, as if it were not there yet (an import being checked)."""
    jobs = Job.objects.filter(owner=user)
    if excluding is not None:
        jobs = jobs.exclude(pk=excluding.pk)
    return Usage(
        uploads_last_hour=jobs.filter(created_at__gte=timezone.now() - timedelta(hours=1)).count(),
        active_jobs=jobs.filter(status__in=Job.ACTIVE).count(),
        storage_bytes=storage_used(user),
        uploads_per_hour=settings.STEMSITE_UPLOADS_PER_HOUR,
        max_active_jobs=settings.STEMSITE_MAX_ACTIVE_JOBS,
        storage_quota_bytes=settings.STEMSITE_STORAGE_QUOTA_MB * MB,
    )


def storage_used(user) -> int:
    """Bytes of the user's uploads and stems, as recorded when each file was stored."""
    inputs = Job.objects.filter(owner=user).aggregate(total=Sum("input_size"))["total"] or 0
    stems = Stem.objects.filter(job__owner=user).aggregate(total=Sum("size"))["total"] or 0
    return inputs + stems


def tracks(count: int) -> str:
    return f"{count} track" if count == 1 else f"{count} tracks"


def check_upload_allowed(user, sizes: list[int], excluding: Job | None = None) -> None:
    """Raise LimitExceeded if storing uploads of these sizes would break one of the user's limits.

    Checked before anything is stored, so a refused upload leaves no file and no job. Stems of
    queued jobs do not exist yet and are not counted: the quota is checked against what is stored.
    An import is checked when its job is made (its size still 0) and again, `excluding` itself,
    once its download has arrived, exactly as an upload of that file would be.
    """
    usage = usage_for(user, excluding)
    count = len(sizes)
    if usage.uploads_per_hour and usage.uploads_last_hour + count > usage.uploads_per_hour:
        left = max(0, usage.uploads_per_hour - usage.uploads_last_hour)
        raise LimitExceeded(
            f"You can upload {tracks(usage.uploads_per_hour)} per hour and have uploaded "
            f"{usage.uploads_last_hour} in the last hour"
            + (f"; {left} more can go now." if left else ". Try again later.")
        )
    if usage.max_active_jobs and usage.active_jobs + count > usage.max_active_jobs:
        left = max(0, usage.max_active_jobs - usage.active_jobs)
        raise LimitExceeded(
            f"You can have {tracks(usage.max_active_jobs)} waiting or being separated at once and have "
            f"{usage.active_jobs}"
            + (f"; {left} more can go now." if left else ". Upload more once some have finished.")
        )
    incoming = sum(sizes)
    if usage.storage_quota_bytes and usage.storage_bytes + incoming > usage.storage_quota_bytes:
        raise LimitExceeded(
            f"This upload ({incoming / MB:.1f} MB) would take you over your storage quota: "
            f"{usage.storage_bytes / MB:.1f} MB of {usage.storage_quota_bytes / MB:.0f} MB used. "
            "Delete tracks you no longer need to make room."
        )
