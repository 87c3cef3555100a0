"""Log-in attempts are throttled per account and per address, with a cool-off and a 429 page."""

from datetime import timedelta

import pytest
from axes.models import AccessAttempt
from django.urls import reverse

from tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db


def log_in(client, username: str, password: str, address: str = "10.0.0.1", **headers):
    return client.post(
        reverse("login"), {"username": username, "password": password}, REMOTE_ADDR=address, **headers
    )


def fail(client, username: str, times: int, address: str = "10.0.0.1") -> list[int]:
    return [log_in(client, username, "wrong", address).status_code for _ in range(times)]


def age_attempts(by: timedelta) -> None:
    """Move the recorded failures into the past, as if that much time had gone by."""
    for attempt in AccessAttempt.objects.all():
        AccessAttempt.objects.filter(pk=attempt.pk).update(attempt_time=attempt.attempt_time - by)


def test_failures_lock_the_account_even_with_the_right_password(client, owner, settings):
    settings.AXES_COOLOFF_TIME = timedelta(minutes=15)
    limit = settings.AXES_FAILURE_LIMIT
    assert fail(client, "owner", limit) == [200] * (limit - 1) + [429], "the failure that hits the limit"

    response = log_in(client, "owner", PASSWORD)
    assert response.status_code == 429
    page = response.content.decode()
    assert "Too many failed log-ins" in page
    assert 'class="topbar"' in page, "the 429 page is in the site's layout"
    assert "about 15 minutes" in page
    assert "_auth_user_id" not in client.session


def test_a_locked_account_is_locked_from_every_address(client, owner, settings):
    fail(client, "owner", settings.AXES_FAILURE_LIMIT, address="10.0.0.1")
    assert log_in(client, "owner", PASSWORD, address="10.9.9.9").status_code == 429


def test_an_address_is_throttled_by_its_own_count_across_accounts(client, owner, outsider, settings):
    limit = settings.AXES_FAILURE_LIMIT
    for number in range(limit):
        log_in(client, f"guess-{number}", "wrong", address="10.0.0.2")

    assert log_in(client, "outsider", PASSWORD, address="10.0.0.2").status_code == 429
    assert log_in(client, "outsider", PASSWORD, address="10.0.0.3").status_code == 302


def test_failures_below_the_limit_do_not_lock(client, owner, settings):
    fail(client, "owner", settings.AXES_FAILURE_LIMIT - 1)
    assert log_in(client, "owner", PASSWORD).status_code == 302


def test_lockout_ends_after_the_cool_off(client, owner, settings):
    settings.AXES_COOLOFF_TIME = timedelta(minutes=5)
    fail(client, "owner", settings.AXES_FAILURE_LIMIT)
    assert log_in(client, "owner", PASSWORD).status_code == 429

    age_attempts(timedelta(minutes=6))
    assert log_in(client, "owner", PASSWORD).status_code == 302


def test_cool_off_setting_is_shown_and_applied(client, owner, settings):
    settings.AXES_COOLOFF_TIME = timedelta(minutes=45)
    fail(client, "owner", settings.AXES_FAILURE_LIMIT)
    assert "about 45 minutes" in log_in(client, "owner", PASSWORD).content.decode()

    age_attempts(timedelta(minutes=30))
    assert log_in(client, "owner", PASSWORD).status_code == 429, "still inside the 45 minutes"


def test_behind_a_proxy_the_forwarded_client_is_counted(client, owner, settings):
    """With one trusted proxy, each client behind it has its own count; a forged prefix is ignored."""
    settings.STEMSITE_TRUSTED_PROXIES = 1
    proxy = "192.168.0.10"
    for _ in range(settings.AXES_FAILURE_LIMIT):
        log_in(client, "guess", "wrong", address=proxy, HTTP_X_FORWARDED_FOR="6.6.6.6, 203.0.113.5")

    blocked = log_in(client, "owner", PASSWORD, address=proxy, HTTP_X_FORWARDED_FOR="203.0.113.5")
    other_client = log_in(client, "owner", PASSWORD, address=proxy, HTTP_X_FORWARDED_FOR="203.0.113.6")
    assert blocked.status_code == 429
    assert other_client.status_code == 302
    assert set(AccessAttempt.objects.values_list("ip_address", flat=True)) == {"203.0.113.5"}


def test_without_trusted_proxies_the_forwarded_header_is_ignored(client, owner, settings):
    """Clients cannot dodge the count by sending their own X-Forwarded-For."""
    for number in range(settings.AXES_FAILURE_LIMIT):
        log_in(client, "guess", "wrong", address="10.0.0.7", HTTP_X_FORWARDED_FOR=f"1.1.1.{number}")
    assert log_in(client, "owner", PASSWORD, address="10.0.0.7").status_code == 429


def test_logging_in_to_ones_own_account_does_not_reset_the_count(client, owner, outsider, settings):
    """An attacker with an account cannot wipe their failures by logging in between guesses."""
    limit = settings.AXES_FAILURE_LIMIT
    fail(client, "owner", limit - 1, address="10.0.0.4")
    assert log_in(client, "outsider", PASSWORD, address="10.0.0.4").status_code == 302
    client.post(reverse("logout"))
    fail(client, "owner", 1, address="10.0.0.4")
    assert log_in(client, "owner", PASSWORD, address="10.0.0.5").status_code == 429
