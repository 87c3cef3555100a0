from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from jobs.catalog import offered_models
from jobs.engine import separation

HOW_TO_FIX = (
    "Jobs will fail until the model loads. Either give this machine internet access once (the\n"
    "weights download on first use), or put the model files in a folder and start with\n"
    "  STEMSITE_MODEL_REPO=/path/to/models make run\n"
    "For a demo without real weights (the stems are then meaningless):\n"
    "  make run DEMO=1"
)


class Command(BaseCommand):
    help = (
        "Load the site's separation model, and every other model the model folder holds, through "
        "demucs' loader; say which ones jobs can use. Fails when the site's model (STEMSITE_MODEL) "
        "does not load."
    )

    def add_arguments(self, parser):
        parser.add_argument("--name", default=settings.STEMSITE_MODEL, help="the model that must load")
        parser.add_argument("--only", action="store_true", help="check that model alone")

    def handle(self, *args, name: str, only: bool, verbosity: int, **options):
        repo = settings.STEMSITE_MODEL_REPO
        where = f"the model folder {repo}" if repo else "the pretrained download cache"
        others = [] if only or not repo else [model for model in offered_models(repo) if model != name]
        site_model_loads = True
        for model_name in [name, *others]:
            try:
                model = separation.load_model(model_name, repo, cache_size=1)
            except separation.ModelUnavailable as error:
                site_model_loads = site_model_loads and model_name != name
                self.stderr.write(f"Model {model_name!r} does not load: {error}")
                continue
            stems = ", ".join(separation.model_sources(model))
            if verbosity > 0:
                ready = f"Model {model_name!r} is ready (from {where}): {stems}."
                self.stdout.write(self.style.SUCCESS(ready))
        if not site_model_loads:
            raise CommandError(f"The site's model {name!r} does not load.\n{HOW_TO_FIX}")
        if repo and verbosity > 0:
            listed = ", ".join(offered_models(repo)) or "none"
            self.stdout.write(f"The upload form offers the models found in {repo}: {listed}.")
