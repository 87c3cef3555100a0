from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from jobs.engine.testmodel import NAMED, SIZES, WEIGHTS, write_model


class Command(BaseCommand):
    help = (
        "Write random-weight Demucs models into a folder that STEMSITE_MODEL_REPO can point at. "
        "They run every real step of a separation offline; their stems are meaningless."
    )
    requires_system_checks = []

    def add_arguments(self, parser):
        parser.add_argument("folder", type=Path)
        parser.add_argument(
            "--name",
            action="append",
            help=f"model name to write (repeatable; default: all of {', '.join(NAMED)})",
        )
        parser.add_argument("--size", choices=sorted(SIZES), default="tiny")
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument(
            "--weights", choices=WEIGHTS, default="random",
            help="trained-like: a trained model's layer scales and weight magnitudes (precision benchmarks)",
        )  # fmt: skip

    def handle(self, *args, folder: Path, name: list[str] | None, size: str, **options):
        seed, weights, verbosity = options["seed"], options["weights"], options["verbosity"]
        names = name or [n for n, (arch, _, _) in NAMED.items() if arch in SIZES[size]]
        for model_name in names:
            if "/" in model_name or model_name.startswith("."):
                raise CommandError("--name must be a plain model name such as htdemucs.")
            path = write_model(folder, model_name, size=size, seed=seed, weights=weights)
            self.stdout.write(f"Wrote {size} {weights}-weight model {model_name!r} to {path.parent}")
            if verbosity > 1:
                self.stdout.write(f"  first weights file: {path.name} ({path.stat().st_size} bytes)")
