"""Faults on real processes: killed workers, a crashed host, Redis restarting or down.

Workers run under `manage.py run_workers` (the supervisor `make run` uses), against the shared
test Redis or, where Redis itself is stopped, a private redis-server on a free port.
"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis
from django.test import override_settings
from django.urls import reverse

from jobs.background.tasks import MSG_PROCESSING_PAUSED, MSG_WORKER_LOST
from jobs.background.worker import die_with_parent
from jobs.models import Job
from stemsite.channel_layer import channel_layers
from tests.conftest import ROOT, free_port, media_files, queues_at
from tests.test_worker import child_pids, upload, wait_until

pytestmark = pytest.mark.django_db(transaction=True)

# Intervals a test can wait out quickly; the README states what the defaults give.
FAST = {
    "STEMSITE_RECONCILE_INTERVAL": "1",
    "STEMSITE_RECONCILE_GRACE_SECONDS": "1",
    "STEMSITE_JOB_MONITORING_INTERVAL": "1",
    "STEMSITE_WORKER_LOST_AFTER": "4",
}


@pytest.fixture
def supervisor(process_env, tmp_path):
    """Start `manage.py run_workers`; it is shut down (warm, then killed) when the test ends."""
    started = []

    def start(
        extra_env: dict | None = None, workers: int = 1, queues: str | None = None, workers_only: bool = False
    ) -> subprocess.Popen:
        log = (tmp_path / f"supervisor-{len(started)}.log").open("w")
        options = ["--workers", str(workers)]
        options += ["--queues", queues] if queues else []
        options += ["--workers-only"] if workers_only else []
        process = subprocess.Popen(
            [sys.executable, "manage.py", "run_workers", *options],
            cwd=ROOT, env={**process_env, **(extra_env or {})}, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        process.log_path = Path(log.name)
        started.append((process, log))
        return process

    yield start
    for process, log in started:
        workers = child_pids(process.pid) if process.poll() is None else []
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=2)
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGTERM)  # a second signal stops the running job
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        for pid in workers:
            if not is_gone(pid):
                os.kill(pid, signal.SIGKILL)
        log.close()


class PrivateRedis:
    """A redis-server of this test's own, without persistence: a restart loses every key."""

    def __init__(self, folder: Path):
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.folder = folder
        self.process = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            ["redis-server", "--bind", "127.0.0.1", "--port", str(self.port),
             "--save", "", "--appendonly", "no", "--dir", str(self.folder)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        client = redis.Redis.from_url(self.url)
        wait_until(lambda: _answers(client), timeout=10)

    def stop(self) -> None:
        self.process.kill()
        self.process.wait()


def _answers(client) -> bool:
    try:
        return client.ping()
    except redis.ConnectionError:
        return False


@pytest.fixture
def private_redis(tmp_path, process_env):
    """A private Redis, used by this test process (settings) and its subprocesses (process_env)."""
    server = PrivateRedis(tmp_path)
    server.start()
    with override_settings(
        REDIS_URL=server.url,
        RQ_QUEUES=queues_at(server.url),
        CHANNEL_LAYERS=channel_layers(server.url),
        STEMSITE_QUEUE_CHECK_SECONDS=0,
    ):
        process_env["REDIS_URL"] = server.url
        yield server
    server.stop()


def is_gone(pid: int) -> bool:
    """True once the process has exited (a zombie nobody reaped counts as gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return True
    return fields[0] in ("Z", "X")


@pytest.mark.slow
@pytest.mark.database_agnostic
def test_killed_worker_parent_takes_its_horse_along_and_the_job_is_recovered(
    owner_client, make_audio, supervisor, media_root
):
    job = upload(owner_client, make_audio("long.flac", seconds=30))
    workers = supervisor(FAST, queues="separations")
    wait_until(lambda: Job.objects.get(pk=job.pk).status == "running")
    [worker] = wait_until(lambda: child_pids(workers.pid))
    [horse] = wait_until(lambda: child_pids(worker))
    stale = Job.objects.get(pk=job.pk)

    os.kill(worker, signal.SIGKILL)

    wait_until(lambda: is_gone(horse), timeout=1)
    wait_until(lambda: Job.objects.get(pk=job.pk).is_finished, timeout=180)
    job.refresh_from_db()
    assert (job.status, job.attempt, job.recoveries) == ("succeeded", 2, 1), job.error_message
    assert not stale.mark_failed("a late write from the killed run")
    assert Job.objects.get(pk=job.pk).status == "succeeded"
    assert len(media_files(media_root)) == 1 + 4
    assert "exited with signal SIGKILL" in workers.log_path.read_text()


@pytest.mark.slow
@pytest.mark.database_agnostic
def test_host_crash_is_resolved_within_90_seconds_with_default_settings(owner_client, make_audio, supervisor):
    job = upload(owner_client, make_audio("long.flac", seconds=30))
    workers = supervisor(queues="separations")
    wait_until(lambda: Job.objects.get(pk=job.pk).status == "running")
    [worker] = wait_until(lambda: child_pids(workers.pid))
    [horse] = wait_until(lambda: child_pids(worker))

    os.kill(horse, signal.SIGSTOP)  # so the parent cannot see it die first: both go at once
    os.kill(worker, signal.SIGKILL)
    os.kill(horse, signal.SIGKILL)
    crashed = time.monotonic()

    wait_until(lambda: Job.objects.get(pk=job.pk).status != "running", timeout=90)
    resolved = time.monotonic() - crashed
    job.refresh_from_db()
    assert job.status in ("queued", "running", "succeeded"), job.error_message
    assert (job.attempt, job.recoveries) == (2, 1)
    print(f"host crash resolved in {resolved:.1f} s")


@pytest.mark.slow
@pytest.mark.database_agnostic
def test_redis_restart_mid_job_restarts_the_worker_and_ends_the_job(
    owner_client, make_audio, private_redis, supervisor
):
    job = upload(owner_client, make_audio("long.flac", seconds=30))
    workers = supervisor(FAST, queues="separations")
    wait_until(lambda: Job.objects.get(pk=job.pk).status == "running")
    [worker] = wait_until(lambda: child_pids(workers.pid))

    private_redis.stop()
    wait_until(lambda: is_gone(worker), timeout=30)
    private_redis.start()

    wait_until(lambda: Job.objects.get(pk=job.pk).is_finished, timeout=180)
    job.refresh_from_db()
    log = workers.log_path.read_text()
    assert "unhandled exception, quitting" in log
    assert f"Worker separations-1 (pid {worker}) exited" in log
    assert len(child_pids(workers.pid)) == 1, "the supervisor runs a fresh worker"
    if job.status == "failed":
        assert job.error_message == MSG_WORKER_LOST
    else:
        assert job.status == "succeeded"
        assert job.recoveries == 1


@pytest.mark.slow
def test_upload_while_redis_is_down_is_saved_paused_and_runs_once_redis_is_back(
    owner_client, make_audio, private_redis, supervisor, media_root
):
    private_redis.stop()

    with make_audio("song.wav", seconds=2).open("rb") as handle:
        response = owner_client.post(reverse("job_create"), {"files": handle})

    job = Job.objects.get()
    assert response.status_code == 302
    assert response["Location"] == job.get_absolute_url()
    assert job.status == "queued"
    page = owner_client.get(response["Location"])
    assert page.status_code == 200
    assert MSG_PROCESSING_PAUSED in page.content.decode()
    job_list = owner_client.get(reverse("job_list"))
    assert job_list.status_code == 200
    assert 'class="banner warning" role="alert">Processing is paused' in job_list.content.decode()
    assert media_files(media_root) == [media_root / job.input_file.name]

    workers = supervisor(FAST)
    wait_until(lambda: "exited with code 1" in workers.log_path.read_text(), timeout=60)
    assert "Reconciler cannot reach Redis" in workers.log_path.read_text()
    assert workers.poll() is None, "the supervisor outlives Redis being down"
    private_redis.start()

    wait_until(lambda: Job.objects.get(pk=job.pk).is_finished, timeout=120)
    job.refresh_from_db()
    assert (job.status, job.attempt) == ("succeeded", 1), job.error_message
    assert 'class="banner' not in owner_client.get(reverse("job_list")).content.decode()


@pytest.mark.database_agnostic
def test_horse_whose_parent_died_before_it_could_ask_to_follow_it_exits_at_once():
    child = os.fork()
    if child == 0:
        die_with_parent(os.getppid() + 1)  # as if the parent had died and we were reparented
        os._exit(0)
    _, status = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(status) == 1


@pytest.mark.database_agnostic
def test_supervisor_shuts_its_workers_down_on_sigterm(supervisor):
    workers = supervisor(FAST, workers=2)  # two on the separations queue, one on short, one on imports
    children = wait_until(lambda: len(child_pids(workers.pid)) == 4 and child_pids(workers.pid))

    workers.send_signal(signal.SIGTERM)

    assert workers.wait(timeout=30) == 0
    assert all(is_gone(pid) for pid in children)
