from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from jobs.testmodel import FOUR_STEMS, SIX_STEMS, SIZES, write_model


class Command(BaseCommand):
    requires_system_checks = []
    help = (
        "Write a random-weight Demucs model into a folder that STEMSITE_MODEL_REPO can point at. "
        "It runs every real step of a separation offline; its stems are meaningless."
    )

    def add_arguments(self, parser):
        parser.add_argument("folder", type=Path)
        parser.add_argument("--name", default="htdemucs", help="model name jobs will ask for")
        parser.add_argument("--size", choices=sorted(SIZES), default="tiny")
        parser.add_argument("--six-stems", action="store_true", help="add guitar and piano")
        parser.add_argument("--seed", type=int, default=0)

    def handle(self, *args, folder: Path, name: str, size: str, six_stems: bool, seed: int, **options):
        if "/" in name or name.startswith("."):
            raise CommandError("--name must be a plain model name such as htdemucs.")
        sources = SIX_STEMS if six_stems else FOUR_STEMS
        weights = write_model(folder, name, size=size, sources=sources, seed=seed)
        self.stdout.write(f"Wrote {size} random-weight model {name!r} to {weights.parent}")
        if options["verbosity"] > 1:
            self.stdout.write(f"  weights: {weights.name} ({weights.stat().st_size} bytes)")
