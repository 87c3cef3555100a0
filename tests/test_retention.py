"""Operators purge old finished jobs with `manage.py purge_expired_jobs`; nothing else is touched."""

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from jobs.models import Job
from tests.conftest import media_files

pytestmark = pytest.mark.django_db


def age(job, days: float) -> None:
    Job.objects.filter(pk=job.pk).update(finished_at=timezone.now() - timedelta(days=days))


def test_expired_jobs_are_deleted_with_their_files_and_the_freed_bytes_reported(
    owner, outsider, make_job, media_root
):
    old = make_job(owner, name="old.wav")
    old_failed = make_job(outsider, name="failed.wav", status="failed")
    recent = make_job(owner, name="recent.wav")
    age(old, 40)
    age(old_failed, 31)
    age(recent, 5)
    old_files = [
        p for p in media_files(media_root) if f"/{old.pk}/" in str(p) or f"/{old_failed.pk}/" in str(p)
    ]
    expected = sum(p.stat().st_size for p in old_files)
    out = StringIO()

    call_command("purge_expired_jobs", stdout=out)

    assert list(Job.objects.values_list("pk", flat=True)) == [recent.pk]
    assert all(not p.exists() for p in old_files)
    assert all(f"/{recent.pk}/" in str(p) for p in media_files(media_root))
    assert "Deleted 2 jobs finished more than 30 days ago, freeing" in out.getvalue()
    assert f"({expected} bytes)" in out.getvalue()


def test_dry_run_reports_and_keeps_everything(owner, make_job, media_root):
    old = make_job(owner)
    age(old, 100)
    before = media_files(media_root)
    out = StringIO()

    call_command("purge_expired_jobs", "--dry-run", "--days", "90", stdout=out)

    assert Job.objects.filter(pk=old.pk).exists()
    assert media_files(media_root) == before
    assert "Would delete 1 job finished more than 90 days ago" in out.getvalue()


def test_unfinished_jobs_are_never_purged(owner, make_job):
    running = make_job(owner, status="running")
    Job.objects.filter(pk=running.pk).update(created_at=timezone.now() - timedelta(days=400))

    call_command("purge_expired_jobs", "--days", "1", stdout=StringIO())

    assert Job.objects.filter(pk=running.pk).exists()


def test_retention_off_refuses_without_days(owner, settings):
    settings.STEMSITE_RETENTION_DAYS = 0
    with pytest.raises(CommandError, match="Retention is off"):
        call_command("purge_expired_jobs", stdout=StringIO())
