"""Builds the DATABASES entry: SQLite by default, anything dj-database-url reads otherwise."""

import dj_database_url

# WAL lets the web server read while a worker writes; IMMEDIATE transactions plus a busy
# timeout make concurrent writers wait for each other instead of failing "database is locked".
SQLITE_OPTIONS = {
    "timeout": 20,
    "transaction_mode": "IMMEDIATE",
    "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
}


def database_config(url: str, default_sqlite_path: str) -> dict:
    if url:
        config = dj_database_url.parse(url, conn_max_age=0, conn_health_checks=True)
    else:
        config = {"ENGINE": "django.db.backends.sqlite3", "NAME": default_sqlite_path}
    if config["ENGINE"] == "django.db.backends.sqlite3":
        config.setdefault("OPTIONS", {}).update(SQLITE_OPTIONS)
    return config
