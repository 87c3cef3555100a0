"""Delete finished jobs older than the retention period, with all their files; run it daily."""

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.template.defaultfilters import filesizeformat

from jobs.retention import purge_expired


class Command(BaseCommand):
    help = "Delete finished jobs (and every file they stored) that finished more than N days ago."

    def add_arguments(self, parser):
        parser.add_argument(
            "--days", type=int, default=None,
            help="age in days (default: STEMSITE_RETENTION_DAYS)",
        )  # fmt: skip
        parser.add_argument("--dry-run", action="store_true", help="report what would go, delete nothing")

    def handle(self, *args, days: int | None, dry_run: bool, verbosity: int, **options):
        days = settings.STEMSITE_RETENTION_DAYS if days is None else days
        if days < 1:
            raise CommandError("Retention is off (STEMSITE_RETENTION_DAYS=0); pass --days N to purge anyway.")
        report = purge_expired(days, dry_run=dry_run)
        verb, frees = ("Would delete", "which would free") if dry_run else ("Deleted", "freeing")
        jobs = f"{report.jobs} job{'s' if report.jobs != 1 else ''}"
        size = f"{filesizeformat(report.freed_bytes)} ({report.freed_bytes} bytes)"
        if verbosity > 0:
            self.stdout.write(f"{verb} {jobs} finished more than {days} days ago, {frees} {size}.")
