"""Let the site's pages read stems from the S3 bucket (the mixer's fetch); run it once per bucket."""

import json

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.files.storage import default_storage
from django.core.management.base import BaseCommand, CommandError

from jobs.bucket import cors_rules, set_cors, site_origin


class Command(BaseCommand):
    help = "Set the bucket's CORS rule so the site's origin may GET (and range-read) presigned stems."

    def add_arguments(self, parser):
        parser.add_argument(
            "--origin", action="append", dest="origins", default=None,
            help="origin to allow, e.g. https://stems.example.org (repeatable; default: STEMSITE_BASE_URL)",
        )  # fmt: skip
        parser.add_argument("--dry-run", action="store_true", help="print the rule, change nothing")

    def handle(self, *args, origins: list[str] | None, dry_run: bool, verbosity: int, **options):
        try:
            origins = [site_origin(origin) for origin in (origins or [settings.STEMSITE_BASE_URL])]
            rules = cors_rules(origins) if dry_run else set_cors(default_storage, origins)
        except ImproperlyConfigured as error:
            raise CommandError(str(error)) from None
        if verbosity > 0:
            verb = "Would set" if dry_run else "Set"
            self.stdout.write(f"{verb} this CORS rule on the bucket:\n{json.dumps(rules, indent=2)}")
