"""Measure tempo, beats and key of finished jobs that have none yet (separated before the site
measured them, or whose measurement failed)."""

from django.core.management.base import BaseCommand

from jobs.background.analysis import analyse_stored, unanalysed_jobs
from jobs.engine.audio import AudioError


class Command(BaseCommand):
    help = "Measure tempo, beats and key of succeeded jobs that have not been analysed yet."

    def add_arguments(self, parser):
        parser.add_argument("--dry-run", action="store_true", help="list the jobs, measure nothing")
        parser.add_argument("--limit", type=int, default=0, help="at most this many jobs (0: all)")

    def handle(self, *args, dry_run: bool, limit: int, verbosity: int, **options):
        jobs = unanalysed_jobs()
        if limit > 0:
            jobs = jobs[:limit]
        done = failed = 0
        for job in jobs:
            if dry_run:
                if verbosity > 1:
                    self.stdout.write(f"Would analyse {job.pk} {job.original_name}")
                done += 1
                continue
            try:
                analyse_stored(job)
            except (AudioError, OSError) as error:
                failed += 1
                self.stderr.write(f"{job.pk} {job.original_name}: not analysed: {error}")
                continue
            done += 1
            if verbosity > 1:
                self.stdout.write(f"{job.pk} {job.original_name}: {job.tempo_and_key}")
        if verbosity > 0:
            verb = "Would analyse" if dry_run else "Analysed"
            line = f"{verb} {done} job{'s' if done != 1 else ''}."
            self.stdout.write(line + (f" {failed} could not be analysed." if failed else ""))
