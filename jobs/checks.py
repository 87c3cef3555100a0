"""Deployment checks of stemsite's own settings (`manage.py check --deploy`)."""

from django.conf import settings
from django.core.checks import Tags, Warning, register


@register(Tags.security, deploy=True)
def test_only_fetch_allow_list(app_configs, **kwargs) -> list[Warning]:
    """The imports' allow-list exists for tests: on a real site it lets a link reach a private address."""
    if not settings.STEMSITE_TEST_FETCH_ALLOWED:
        return []
    return [
        Warning(
            "STEMSITE_TEST_FETCH_ALLOWED is set: imports may reach these private addresses "
            f"({', '.join(sorted(settings.STEMSITE_TEST_FETCH_ALLOWED))}).",
            hint="It is for the test suite only. Unset it on a real site.",
            id="stemsite.W001",
        )
    ]
