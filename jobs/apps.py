from django.apps import AppConfig


class JobsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "jobs"
    verbose_name = "Separation jobs"

    def ready(self) -> None:
        from jobs import checks  # noqa: F401 (registers the deployment checks)
