"""Shared fixtures: standing users, a tiny real Demucs model, real Redis, real files, real workers."""

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import redis
import soundfile
from django.conf import settings
from django.db import connection
from django.test import override_settings

from jobs.engine.testmodel import NAMED, write_model
from stemsite.channel_layer import channel_layers

ROOT = Path(__file__).resolve().parent.parent


def _test_redis_url() -> str:
    """The test Redis database; each pytest-xdist worker (gw0, gw1, ...) takes the next one down."""
    url = os.environ.get("STEMSITE_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    if not worker:
        return url
    base, _, number = url.rpartition("/")
    return f"{base}/{int(number) - int(worker.removeprefix('gw'))}"


TEST_REDIS_URL = _test_redis_url()


def pytest_collection_modifyitems(items):
    """Slow tests first. `make test` has pytest-xdist hand tests out a few at a time
    (`--maxschedchunk=1`), so the long ones spread over the processes at the start and nobody is
    left running one alone at the end."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


PASSWORD = "a-long-test-password-42"


@pytest.fixture(scope="session")
def test_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("stemsite")


@pytest.fixture(scope="session")
def model_repo(test_root) -> Path:
    """A random-weight htdemucs, loaded through demucs' real loader from a local folder."""
    folder = test_root / "models"
    for name in NAMED:
        write_model(folder, name, size="tiny")
    return folder


@pytest.fixture(scope="session")
def media_root(test_root) -> Path:
    return test_root / "media"


@pytest.fixture(scope="session")
def engine_cache(tmp_path_factory) -> Path:
    """The OpenVINO engine's cache, shared by the run's test processes: each tiny network is
    converted once per run (conversion takes a lock, so they wait for each other)."""
    base = tmp_path_factory.getbasetemp()
    return (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "engine"


def queues_at(url: str) -> dict:
    """RQ_QUEUES with every queue on the Redis at `url`."""
    return {name: {**config, "URL": url} for name, config in settings.RQ_QUEUES.items()}


@pytest.fixture(scope="session", autouse=True)
def _isolated_services(test_root, model_repo, media_root, engine_cache):
    """Point Redis, media, models and the engine cache at test-only places for the whole session.

    Jobs run in PyTorch unless a test asks for another engine: the engine's own tests
    (test_engine.py) run OpenVINO, and the rest need not wait for conversions.
    """
    overrides = override_settings(
        STEMSITE_ENGINE="torch",
        STEMSITE_ENGINE_CACHE_DIR=engine_cache,
        REDIS_URL=TEST_REDIS_URL,
        RQ_QUEUES=queues_at(TEST_REDIS_URL),
        CHANNEL_LAYERS=channel_layers(TEST_REDIS_URL),
        MEDIA_ROOT=str(media_root),
        STEMSITE_MODEL_REPO=str(model_repo),
        STEMSITE_MODEL="htdemucs",
        SECURE_SSL_REDIRECT=False,
        # Pages read Redis (the queue banner, the workers' reports) afresh on every request.
        STEMSITE_QUEUE_CHECK_SECONDS=0,
    )
    overrides.enable()
    yield
    overrides.disable()


@pytest.fixture(scope="session")
def django_db_modify_db_settings(django_db_modify_db_settings_parallel_suffix, test_root):
    """A file-backed SQLite test database, so worker and server subprocesses share it; each test
    process (pytest-xdist) has its own, on PostgreSQL through pytest-django's name suffix."""
    db = settings.DATABASES["default"]
    if db["ENGINE"] == "django.db.backends.sqlite3":
        db.setdefault("TEST", {})["NAME"] = str(test_root / "test.sqlite3")


@pytest.fixture(autouse=True)
def redis_db():
    """The test Redis database, emptied around every test."""
    client = redis.Redis.from_url(TEST_REDIS_URL)
    try:
        client.flushdb()
    except redis.ConnectionError:
        pytest.fail(f"Redis is not answering at {TEST_REDIS_URL}; `make test` starts it.")
    yield client
    client.flushdb()


@pytest.fixture(autouse=True)
def _empty_media(media_root):
    yield
    shutil.rmtree(media_root, ignore_errors=True)


def media_files(media_root: Path) -> list[Path]:
    return sorted(p for p in media_root.rglob("*") if p.is_file()) if media_root.exists() else []


# Users: always the same three roles.


@pytest.fixture
def owner(django_user_model):
    return django_user_model.objects.create_user("owner", password=PASSWORD)


@pytest.fixture
def outsider(django_user_model):
    return django_user_model.objects.create_user("outsider", password=PASSWORD)


@pytest.fixture
def owner_token(owner) -> str:
    """An API token of the owner's, as `Authorization: Bearer` takes it."""
    from jobs.api.tokens import create_token

    return create_token(owner, "script")[1]


@pytest.fixture
def outsider_token(outsider) -> str:
    from jobs.api.tokens import create_token

    return create_token(outsider, "theirs")[1]


@pytest.fixture
def staff(django_user_model):
    return django_user_model.objects.create_user("staff", password=PASSWORD, is_staff=True, is_superuser=True)


def _client_for(user):
    from django.test import Client

    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def owner_client(owner):
    return _client_for(owner)


@pytest.fixture
def outsider_client(outsider):
    return _client_for(outsider)


@pytest.fixture
def staff_client(staff):
    return _client_for(staff)


# Audio made on the fly.


def tone(seconds: float, rate: int = 44100, channels: int = 2) -> np.ndarray:
    """A chord with a little noise: enough signal for every stage of a separation."""
    t = np.arange(int(seconds * rate)) / rate
    mono = 0.2 * np.sin(2 * np.pi * 220 * t) + 0.1 * np.sin(2 * np.pi * 330 * t)
    mono += 0.01 * np.random.default_rng(0).standard_normal(len(t))
    return np.stack([mono * (1 - 0.2 * c) for c in range(channels)], axis=1).astype(np.float32)


@pytest.fixture
def make_audio(tmp_path):
    """Write a test track: `make_audio("x.wav", seconds=3)`; mp3, flac and ogg go through ffmpeg."""

    def make(name: str, seconds: float = 3.0, rate: int = 44100, channels: int = 2) -> Path:
        path = tmp_path / name
        wav = tmp_path / f"{path.stem}-source.wav"
        soundfile.write(wav, tone(seconds, rate, channels), rate)
        if path.suffix == ".wav":
            wav.rename(path)
        else:
            subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(wav), str(path)], check=True)
        return path

    return make


# Real processes: a burst worker and a whole site, sharing the test database. Unless a test names
# its queues, a test worker listens to every queue (separations first), as `make run`'s two do.


def all_queues() -> list[str]:
    return list(settings.RQ_QUEUES)


@pytest.fixture
def process_env(media_root, model_repo, engine_cache) -> dict:
    """Environment for a subprocess that must see this test's database, Redis and media."""
    db = connection.settings_dict
    if db["ENGINE"] == "django.db.backends.sqlite3":
        url = f"sqlite:///{db['NAME']}"
    else:
        host, port = db["HOST"] or "127.0.0.1", db["PORT"] or 5432
        url = f"postgres://{db['USER']}:{db['PASSWORD']}@{host}:{port}/{db['NAME']}"
    return {
        **os.environ,
        "DATABASE_URL": url,
        "REDIS_URL": TEST_REDIS_URL,
        "MEDIA_ROOT": str(media_root),
        "STEMSITE_MODEL_REPO": str(model_repo),
        "STEMSITE_MODEL": "htdemucs",
        "STEMSITE_ENGINE": "torch",
        "STEMSITE_ENGINE_CACHE_DIR": str(engine_cache),
        "SECRET_KEY": "stemsite-test-key",
        "DEBUG": "false",
        "STEMSITE_HTTPS": "false",
        "PYTHONUNBUFFERED": "1",
        # One thread starts fastest for the tiny test model; real workers use every core.
        "STEMSITE_TORCH_THREADS": "1",
    }


@pytest.fixture
def run_worker(process_env):
    """Run `manage.py rqworker --burst`: it takes every queued job, then exits."""

    def run(
        extra_env: dict | None = None, timeout: float = 240, queues: list[str] | None = None
    ) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "manage.py", "rqworker", "--burst", *(queues or all_queues())],
            cwd=ROOT,
            env={**process_env, **(extra_env or {})},
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    return run


@pytest.fixture
def start_worker(process_env):
    """Start a long-running `manage.py rqworker`; it is stopped when the test ends."""
    workers = []

    def start(queues: list[str] | None = None, extra_env: dict | None = None) -> subprocess.Popen:
        worker = subprocess.Popen(
            [sys.executable, "manage.py", "rqworker", *(queues or all_queues())],
            cwd=ROOT, env={**process_env, **(extra_env or {})},
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        workers.append(worker)
        return worker

    yield start
    for worker in workers:
        worker.terminate()
    for worker in workers:
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            worker.kill()  # never left to take the next test's jobs
            raise


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, process: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited early with code {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"nothing listening on port {port}")


@contextmanager
def running(
    command: list[str], env: dict, log_path: Path, stop_seconds: float = 20
) -> Iterator[subprocess.Popen]:
    """`command` as a process in the project folder, its output in `log_path`; stopped at the end
    (killed if it has not exited `stop_seconds` after SIGTERM)."""
    with log_path.open("w") as log:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            yield process
        finally:
            process.terminate()
            try:
                process.wait(timeout=stop_seconds)
            except subprocess.TimeoutExpired:
                process.kill()


@contextmanager
def daphne_server(env: dict, log_path: Path) -> Iterator[tuple[subprocess.Popen, int]]:
    """daphne serving the site on a free port, as production runs it; yields (process, port)."""
    port = free_port()
    daphne = str(Path(sys.executable).parent / "daphne")
    command = [daphne, "-b", "127.0.0.1", "-p", str(port), "stemsite.asgi:application"]
    with running(command, env, log_path) as web:
        wait_for_port(port, web)
        yield web, port


@pytest.fixture
def live_web(process_env, tmp_path):
    """daphne as a real process, no worker: for tests of pages and uploads that need no job run."""
    with daphne_server(process_env, tmp_path / "web.log") as (_, port):
        yield f"http://127.0.0.1:{port}"


@pytest.fixture
def live_site(live_web, process_env, tmp_path):
    """daphne and one worker on every queue as real processes; yields the site's base URL."""
    worker = [sys.executable, "manage.py", "rqworker", *all_queues()]
    with running(worker, process_env, tmp_path / "worker.log"):
        yield live_web


@pytest.fixture
def reporting_worker(redis_db):
    """Register a separation worker as one on another machine would, with the report it would
    publish: `reporting_worker(half="bf16")` for hardware with native half precision."""
    from jobs.background.worker import SeparationWorker

    workers = []

    def register(half: str | None = None, models=("htdemucs",), model_error: str = ""):
        worker = SeparationWorker(["separations"], connection=redis_db, name=f"other-host-{len(workers)}")
        worker.report = {"model": "htdemucs", "model_error": model_error, "models": list(models),
                         "device": "cpu", "half": half, "engines": {}}  # fmt: skip
        worker.register_birth()
        workers.append(worker)
        return worker

    yield register
    for worker in workers:
        worker.register_death()


@pytest.fixture
def make_job(make_audio):
    """A job row with real files, as the worker would leave it: `make_job(owner, status="succeeded")`."""
    from django.core.files import File

    from jobs.models import Job, Stem

    def make(
        owner, status="succeeded", name="Song.wav", stems=("drums", "bass", "other", "vocals"), **fields
    ) -> Job:
        source = make_audio("source.mp3", seconds=1)
        job = Job(owner=owner, original_name=name, model_name="htdemucs", status=status, duration_seconds=1.0)
        for field, value in fields.items():
            setattr(job, field, value)
        with source.open("rb") as handle:
            job.input_file.save(name, File(handle), save=False)
        job.save()
        if status == "succeeded":
            for position, stem_name in enumerate(stems):
                stem = Stem(job=job, name=stem_name, position=position, size=source.stat().st_size)
                with source.open("rb") as handle:
                    stem.file.save(f"{stem_name}.mp3", File(handle), save=True)
        return job

    return make


@pytest.fixture
def make_export(make_audio):
    """A finished mix export with a real (mp3) file: `make_export(job)`."""
    from django.core.files import File

    from jobs.models import MixExport

    def make(job, gains=None, output_format="mp3", status="succeeded") -> MixExport:
        gains = gains or {stem.name: 1.0 for stem in job.stems.all()}
        export = MixExport.objects.create(
            job=job, settings_key=f"test-{len(gains)}-{output_format}-{sorted(gains.items())}"[:64],
            settings={"gains": gains}, output_format=output_format, status=status,
        )  # fmt: skip
        if status == "succeeded":
            source = make_audio("mix.mp3", seconds=1)
            with source.open("rb") as handle:
                export.file.save(f"mix.{output_format}", File(handle), save=False)
            export.size = source.stat().st_size
            export.save()
        return export

    return make


# Duration bombs: tiny files that decode to far more audio than they look like.


@pytest.fixture(scope="session")
def hour_of_silence(test_root) -> Path:
    """An hour of silent 44.1 kHz stereo FLAC: about half a megabyte, 1.2 GB as float32."""
    path = test_root / "hour.flac"
    subprocess.run(
        ["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "anullsrc=r=44100:cl=stereo", "-t", "3600", str(path)],
        check=True,
    )
    return path


def flac_claiming(source: Path, target: Path, seconds: float) -> Path:
    """A copy of a FLAC whose STREAMINFO header claims `seconds` of audio (0: length unknown)."""
    data = bytearray(source.read_bytes())
    assert data[:4] == b"fLaC"
    assert data[4] & 0x7F == 0, "STREAMINFO must be the first block"
    fields = int.from_bytes(data[18:26], "big")
    rate = fields >> 44
    fields = (fields & ~((1 << 36) - 1)) | int(seconds * rate)
    data[18:26] = fields.to_bytes(8, "big")
    target.write_bytes(data)
    return target
