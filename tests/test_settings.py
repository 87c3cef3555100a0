"""Settings come from the environment: malformed values stop start-up, production is locked down."""

import json
import os
import subprocess
import sys

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.urls import reverse

from stemsite.database import database_config
from stemsite.env import env_bool, env_float_list, env_int, env_list
from tests.conftest import PASSWORD, ROOT


def test_malformed_values_are_refused(monkeypatch):
    monkeypatch.setenv("X_BOOL", "maybe")
    monkeypatch.setenv("X_INT", "ten")
    with pytest.raises(ImproperlyConfigured, match="X_BOOL"):
        env_bool("X_BOOL")
    with pytest.raises(ImproperlyConfigured, match="X_INT"):
        env_int("X_INT", 1)


def test_values_are_read(monkeypatch):
    monkeypatch.setenv("X_BOOL", "Yes")
    monkeypatch.setenv("X_INT", "12")
    monkeypatch.setenv("X_LIST", "a.example, b.example,")
    assert env_bool("X_BOOL") is True
    assert env_int("X_INT", 1) == 12
    assert env_list("X_LIST", []) == ["a.example", "b.example"]
    assert env_int("X_UNSET", 5) == 5


def test_sqlite_gets_wal_and_a_busy_timeout_from_a_url_too():
    for config in (database_config("", "/tmp/a.sqlite3"), database_config("sqlite:////tmp/b.sqlite3", "")):
        assert config["OPTIONS"]["timeout"] >= 5
        assert "journal_mode=WAL" in config["OPTIONS"]["init_command"]


def test_postgres_from_database_url():
    config = database_config("postgres://u:p@db.example:5433/stems", "")
    assert (config["ENGINE"], config["NAME"], config["HOST"], config["PORT"]) == (
        "django.db.backends.postgresql", "stems", "db.example", 5433,
    )  # fmt: skip
    assert "OPTIONS" not in config or "init_command" not in config["OPTIONS"]


def manage(*args, **env):
    clean = {k: v for k, v in os.environ.items() if k not in {"DEBUG", "SECRET_KEY"}}
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env={**clean, **env}, capture_output=True, text=True
    )


def test_production_refuses_to_start_without_a_secret_key():
    result = manage("check")
    assert result.returncode != 0
    assert "SECRET_KEY is not set" in result.stderr


def test_check_deploy_passes_with_production_settings():
    secret = "x" * 20 + "production-like-secret-key-with-enough-entropy-0123456789"
    result = manage(
        "check", "--deploy", "--fail-level", "WARNING", SECRET_KEY=secret, ALLOWED_HOSTS="stems.example"
    )
    assert result.returncode == 0, result.stdout + result.stderr


def settings_of(**env) -> dict:
    """Security settings as a fresh process computes them from this environment."""
    names = (
        "SECURE_HSTS_SECONDS SECURE_SSL_REDIRECT SESSION_COOKIE_SECURE CSRF_COOKIE_SECURE "
        "SECURE_CONTENT_TYPE_NOSNIFF EMAIL_BACKEND STEMSITE_TRUSTED_PROXIES AXES_FAILURE_LIMIT"
    )
    code = (
        "import json, django; from django.conf import settings as s; django.setup(); "
        f"values = {{n: getattr(s, n) for n in {names.split()!r}}}; "
        "values['AXES_COOLOFF_TIME'] = s.AXES_COOLOFF_TIME.total_seconds(); print(json.dumps(values))"
    )
    clean = {k: v for k, v in os.environ.items() if k not in {"DEBUG", "SECRET_KEY", "STEMSITE_HTTPS"}}
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={**clean, "DJANGO_SETTINGS_MODULE": "stemsite.settings", "LOG_LEVEL": "WARNING", **env},
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_https_protections_are_on_when_debug_is_off():
    production = settings_of(SECRET_KEY="x" * 50)
    assert production["SECURE_HSTS_SECONDS"] >= 31536000
    assert production["SECURE_SSL_REDIRECT"] is True
    assert production["SESSION_COOKIE_SECURE"] is True
    assert production["CSRF_COOKIE_SECURE"] is True
    assert production["SECURE_CONTENT_TYPE_NOSNIFF"] is True

    local = settings_of(DEBUG="true")
    assert local["SECURE_HSTS_SECONDS"] == 0
    assert local["SESSION_COOKIE_SECURE"] is False


@pytest.mark.django_db
def test_https_responses_carry_hsts_and_secure_cookies(client, owner):
    """In this (production-like) test process: headers and cookie flags on real responses."""
    response = client.post(
        reverse("login"), {"username": "owner", "password": PASSWORD}, secure=True, REMOTE_ADDR="10.1.1.1"
    )
    assert response.status_code == 302
    assert response["Strict-Transport-Security"].startswith("max-age=31536000")
    assert response.cookies["sessionid"]["secure"] is True
    assert response.cookies["sessionid"]["httponly"] is True
    assert response.cookies["csrftoken"]["secure"] is True


def test_account_settings_come_from_the_environment():
    values = settings_of(
        SECRET_KEY="x" * 50,
        EMAIL_HOST="smtp.example.org",
        STEMSITE_TRUSTED_PROXIES="2",
        STEMSITE_LOGIN_FAILURE_LIMIT="9",
        STEMSITE_LOGIN_COOLOFF_MINUTES="30",
    )
    assert values["EMAIL_BACKEND"] == "django.core.mail.backends.smtp.EmailBackend"
    assert values["STEMSITE_TRUSTED_PROXIES"] == 2
    assert (values["AXES_FAILURE_LIMIT"], values["AXES_COOLOFF_TIME"]) == (9, 1800)
    assert (
        settings_of(SECRET_KEY="x" * 50)["EMAIL_BACKEND"] == "django.core.mail.backends.console.EmailBackend"
    )


def test_webhook_retry_delays_are_a_list_of_numbers(monkeypatch):
    monkeypatch.setenv("X_DELAYS", "10, 60,300")
    assert env_float_list("X_DELAYS", [1]) == [10.0, 60.0, 300.0]
    monkeypatch.setenv("X_DELAYS", "")
    assert env_float_list("X_DELAYS", [1]) == []
    monkeypatch.setenv("X_DELAYS", "10,soon")
    with pytest.raises(ImproperlyConfigured, match="X_DELAYS"):
        env_float_list("X_DELAYS", [1])
    monkeypatch.setenv("X_DELAYS", "-5")
    with pytest.raises(ImproperlyConfigured, match="negative"):
        env_float_list("X_DELAYS", [1])


def test_imports_are_direct_links_unless_the_operator_says_otherwise():
    secret = "x" * 20 + "production-like-secret-key-with-enough-entropy-0123456789"
    result = manage("shell", "-c", "from django.conf import settings; print(settings.STEMSITE_URL_IMPORT)",
                    DEBUG="true")  # fmt: skip
    assert result.stdout.strip().splitlines()[-1] == "direct"
    refused = manage("check", DEBUG="true", STEMSITE_URL_IMPORT="everything")
    assert refused.returncode != 0
    assert "STEMSITE_URL_IMPORT must be one of off, direct, sites, not 'everything'." in refused.stderr
    warned = manage(
        "check", "--deploy", "--fail-level", "WARNING", SECRET_KEY=secret, ALLOWED_HOSTS="stems.example",
        STEMSITE_TEST_FETCH_ALLOWED="127.0.0.1:8123",
    )  # fmt: skip
    assert warned.returncode != 0
    assert "stemsite.W001" in warned.stderr


def test_tracing_and_log_format_come_from_standard_variables_and_bad_values_stop_start_up():
    assert (
        "must be one of http/protobuf, not 'grpc'"
        in manage(
            "check",
            SECRET_KEY="x" * 50,
            OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:9",
            OTEL_EXPORTER_OTLP_PROTOCOL="grpc",
        ).stderr
    )
    assert (
        "STEMSITE_LOG_FORMAT must be one of text, json"
        in manage("check", SECRET_KEY="x" * 50, STEMSITE_LOG_FORMAT="yaml").stderr
    )
