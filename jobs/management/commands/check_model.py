from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from jobs import separation

HOW_TO_FIX = (
    "Jobs will fail until the model loads. Either give this machine internet access once (the\n"
    "weights download on first use), or put the model files in a folder and start with\n"
    "  STEMSITE_MODEL_REPO=/path/to/models make run\n"
    "For a demo without real weights (the stems are then meaningless):\n"
    "  make run DEMO=1"
)


class Command(BaseCommand):
    help = "Load the configured separation model through demucs' loader and say whether jobs can run."

    def add_arguments(self, parser):
        parser.add_argument("--name", default=settings.STEMSITE_MODEL)

    def handle(self, *args, name: str, **options):
        repo = settings.STEMSITE_MODEL_REPO
        try:
            model = separation.load_model(name, repo)
        except separation.ModelUnavailable as error:
            raise CommandError(f"{error}\n{HOW_TO_FIX}") from None
        where = repo or "the pretrained download cache"
        stems = ", ".join(separation.model_sources(model))
        self.stdout.write(self.style.SUCCESS(f"Model {name!r} is ready (from {where}): {stems}."))
