"""Settings come from the environment: malformed values stop start-up, production is locked down."""

import os
import subprocess
import sys

import pytest
from django.core.exceptions import ImproperlyConfigured

from stemsite.database import database_config
from stemsite.env import env_bool, env_int, env_list
from tests.conftest import ROOT


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
