"""The real site for the load benchmarks (bench/pages.py, bench/push.py); not a benchmark itself.

It gives a benchmark what production has: its own database (a SQLite file, or a PostgreSQL
database created here and dropped afterwards), Redis, DEBUG off, a SECRET_KEY, and daphne started
as the Procfile starts it, or the production layout: several daphne processes behind Debian's
nginx (`/usr/sbin/nginx`, `apt-get install nginx`), run from a configuration written into the
run's temporary folder (upstream keep-alive connections, websocket upgrade on /ws/). Django is set
up in the benchmark's own process too, so rows and sessions are made with the ORM before the
clients start.
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
NGINX = Path("/usr/sbin/nginx")
PORTS = range(8100, 8200)
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/12"
POSTGRES_SERVER = "postgres://postgres@127.0.0.1:5432"


def free_port(taken: tuple[int, ...] = ()) -> int:
    for port in PORTS:
        if port in taken:
            continue
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) != 0:
                return port
    raise SystemExit(f"No free port in {PORTS.start}-{PORTS.stop - 1}.")


NGINX_CONF = """\
# Written by bench/live_site.py for one benchmark run: the README's production block, on plain HTTP,
# with keep-alive connections to the daphne processes.
{user}worker_processes auto;
pid {folder}/nginx.pid;
error_log {folder}/error.log warn;
events {{ worker_connections 8192; }}
http {{
    access_log off;
    client_body_temp_path {folder}/body;
    proxy_temp_path {folder}/proxy;
    fastcgi_temp_path {folder}/fastcgi;
    uwsgi_temp_path {folder}/uwsgi;
    scgi_temp_path {folder}/scgi;
    upstream stemsite {{
{servers}
        keepalive 64;
    }}
    server {{
        listen 127.0.0.1:{port};
        client_max_body_size 201m;
        proxy_http_version 1.1;
        location / {{
            proxy_pass http://stemsite;
            proxy_buffering off;
            proxy_set_header Host $http_host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_set_header Connection "";
        }}
        location /ws/ {{
            proxy_pass http://stemsite;
            proxy_set_header Host $http_host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection "upgrade";
            proxy_read_timeout 1h;
        }}
    }}
}}
"""


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
        self.servers: list[subprocess.Popen] = []
        self.proxy: subprocess.Popen | None = None
        self.logs = []
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

    def start(self, port: int, daphnes: int = 1, nginx: bool = False) -> str:
        """Start the site and wait until it answers on `port`; returns its base URL.

        Without nginx, one daphne as the Procfile starts it. With nginx, `daphnes` daphne processes
        on ports of their own behind nginx on `port`, as the README's production layout runs them.
        """
        if not nginx:
            return self._daphne(port)
        if not NGINX.exists():
            raise SystemExit("nginx is not installed: apt-get install nginx (Debian's package).")
        ports = []
        for _ in range(daphnes):
            ports.append(free_port((port, *ports)))
            self._daphne(ports[-1])
        folder = self.work / "nginx"
        folder.mkdir(exist_ok=True)
        conf = folder / "nginx.conf"
        conf.write_text(
            NGINX_CONF.format(
                user="user root;\n" if os.geteuid() == 0 else "",
                folder=folder,
                port=port,
                servers="\n".join(f"        server 127.0.0.1:{p};" for p in ports),
            )
        )
        log = (folder / "stderr.log").open("w")
        self.logs.append(log)
        command = [str(NGINX), "-p", str(folder), "-e", str(folder / "error.log"), "-c", str(conf)]
        self.proxy = subprocess.Popen([*command, "-g", "daemon off;"], stdout=log, stderr=subprocess.STDOUT)
        return self._wait(port, self.proxy, folder / "error.log")

    def _daphne(self, port: int) -> str:
        log_path = self.log_path.with_name(f"daphne-{port}.log")
        log = log_path.open("w")
        self.logs.append(log)
        command = [str(DAPHNE), "-b", "127.0.0.1", "-p", str(port), "stemsite.asgi:application"]
        server = subprocess.Popen(command, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        self.servers.append(server)
        return self._wait(port, server, log_path)

    def _wait(self, port: int, process: subprocess.Popen, log_path: Path) -> str:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise SystemExit(
                    f"{process.args[0]} exited ({process.returncode}):\n{log_path.read_text()[-3000:]}"
                )
            try:
                with urllib.request.urlopen(f"{base}/accounts/login/", timeout=2) as response:
                    if response.status == 200:
                        return base
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.2)
        raise SystemExit(f"{process.args[0]} did not answer within 60 s:\n{log_path.read_text()[-3000:]}")

    def stop(self) -> None:
        """Stop nginx and every daphne; the site can be started again (another layout, same data)."""
        for process in [p for p in (self.proxy, *self.servers) if p is not None]:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
        for log in self.logs:
            log.close()
        self.proxy, self.servers, self.logs = None, [], []

    @property
    def server_pids(self) -> list[int]:
        return [server.pid for server in self.servers]

    def server_cpu_seconds(self) -> float:
        """User + system CPU seconds the daphne processes have used so far (from /proc)."""
        return sum(cpu_seconds(server.pid) for server in self.servers)

    def proxy_cpu_seconds(self) -> float:
        """The same for nginx: its master and worker processes (0 without nginx)."""
        if self.proxy is None:
            return 0.0
        children = Path(f"/proc/{self.proxy.pid}/task/{self.proxy.pid}/children").read_text().split()
        return sum(cpu_seconds(int(pid)) for pid in [self.proxy.pid, *children])

    def profile(self, folder: Path | None, name: str, seconds: float | None = None) -> list[subprocess.Popen]:
        """py-spy sampling each daphne (--profile) for `seconds`, or until sent SIGINT: collapsed
        stacks of what holds the interpreter (the CPU each request costs, not its waits), one
        file per daphne in `folder`."""
        if folder is None:
            return []
        folder.mkdir(parents=True, exist_ok=True)
        spy = Path(sys.executable).parent / "py-spy"
        duration = [] if seconds is None else ["-d", str(int(seconds))]
        return [
            subprocess.Popen(
                [
                    str(spy),
                    "record",
                    "--gil",
                    "-p",
                    str(pid),
                    *duration,
                    "-f",
                    "raw",
                    "-o",
                    str(folder / f"{name.replace(' ', '-')}-daphne{number}.txt"),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for number, pid in enumerate(self.server_pids, start=1)
        ]


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
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
