"""The real site for the load benchmarks (bench/pages.py, bench/push.py); not a benchmark itself.

It gives a benchmark what production has: its own database (a SQLite file, or a PostgreSQL
database created here and dropped afterwards), Redis, DEBUG off, a SECRET_KEY, and daphne started
as the Procfile starts it. Django is set up in the benchmark's own process too, so rows and
sessions are made with the ORM before the clients start.
"""

import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DAPHNE = Path(sys.executable).parent / "daphne"
PORTS = range(8100, 8200)
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/12"
POSTGRES_SERVER = "postgres://postgres@127.0.0.1:5432"


def free_port() -> int:
    for port in PORTS:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) != 0:
                return port
    raise SystemExit(f"No free port in {PORTS.start}-{PORTS.stop - 1}.")


def postgres_admin(statement: str) -> None:
    """Run CREATE/DROP DATABASE on the server's maintenance database (outside a transaction)."""
    import psycopg

    with psycopg.connect(f"{POSTGRES_SERVER}/postgres", autocommit=True) as connection:
        connection.execute(statement)


class Site:
    """Environment, database and server of one benchmark run. Use as a context manager."""

    def __init__(
        self, database: str, work: Path, db_name: str, redis_url: str, extra_env: dict | None = None
    ):
        self.database, self.work, self.db_name, self.redis_url = database, work, db_name, redis_url
        if database == "postgres":
            url = f"{POSTGRES_SERVER}/{db_name}"
        else:
            url = f"sqlite:///{work / f'{db_name}.sqlite3'}"
        self.env = {
            **os.environ,
            "DATABASE_URL": url,
            "REDIS_URL": redis_url,
            "SECRET_KEY": secrets.token_urlsafe(50),
            "DEBUG": "false",
            "STEMSITE_HTTPS": "false",
            "STEMSITE_VAR_DIR": str(work / "var"),
            "MEDIA_ROOT": str(work / "media"),
            "LOG_LEVEL": "WARNING",
            "PYTHONPATH": str(ROOT),
            "PYTHONUNBUFFERED": "1",
            "DJANGO_SETTINGS_MODULE": "stemsite.settings",
            **(extra_env or {}),
        }
        self.server: subprocess.Popen | None = None
        self.log_path = work / "daphne.log"

    def __enter__(self) -> "Site":
        import redis

        redis.Redis.from_url(self.redis_url).flushdb()
        if self.database == "postgres":
            postgres_admin(f"DROP DATABASE IF EXISTS {self.db_name} WITH (FORCE)")
            postgres_admin(f"CREATE DATABASE {self.db_name}")
        os.environ.update(self.env)
        sys.path.insert(0, str(ROOT))
        import django
        from django.core.management import call_command

        django.setup()
        call_command("migrate", verbosity=0, interactive=False)
        return self

    def __exit__(self, *exc) -> None:
        import redis
        from django.db import connections

        self.stop()
        connections.close_all()
        if self.database == "postgres":
            postgres_admin(f"DROP DATABASE IF EXISTS {self.db_name} WITH (FORCE)")
        redis.Redis.from_url(self.redis_url).flushdb()

    def start(self, port: int) -> str:
        """Start daphne as the Procfile does and wait until it answers; returns its base URL."""
        self.log = self.log_path.open("w")
        command = [str(DAPHNE), "-b", "127.0.0.1", "-p", str(port), "stemsite.asgi:application"]
        self.server = subprocess.Popen(
            command, cwd=ROOT, env=self.env, stdout=self.log, stderr=subprocess.STDOUT
        )
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.server.poll() is not None:
                raise SystemExit(
                    f"daphne exited ({self.server.returncode}):\n{self.log_path.read_text()[-3000:]}"
                )
            try:
                with urllib.request.urlopen(f"{base}/accounts/login/", timeout=2) as response:
                    if response.status == 200:
                        return base
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.2)
        raise SystemExit(f"daphne did not answer within 60 s:\n{self.log_path.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.server is not None and self.server.poll() is None:
            self.server.terminate()
            try:
                self.server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.server.kill()
                self.server.wait()
            self.log.close()

    def server_cpu_seconds(self) -> float:
        """User + system CPU seconds daphne has used so far (from /proc)."""
        fields = Path(f"/proc/{self.server.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def session_key(user) -> str:
    """A logged-in session for `user`, stored as Django's login() stores one (no password hashing)."""
    from importlib import import_module

    from django.conf import settings
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY

    session = import_module(settings.SESSION_ENGINE).SessionStore()
    session[SESSION_KEY] = user._meta.pk.value_to_string(user)
    session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
    session[HASH_SESSION_KEY] = user.get_session_auth_hash()
    session.create()
    return session.session_key


def machine_load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f}, {five:.2f}, {fifteen:.2f} on {os.cpu_count()} CPUs"
