"""Stopping a worker at deploy: SIGTERM lets the running job finish; a second one fails it cleanly."""

import signal
import subprocess
import time
from pathlib import Path

import pytest
from django.utils import timezone

from jobs.models import Job
from tests.conftest import media_files
from tests.test_worker import child_pids, upload, wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.database_agnostic]


def running_job(owner_client, make_audio, start_worker, seconds: float) -> tuple[Job, subprocess.Popen]:
    job = upload(owner_client, make_audio("song.flac", seconds=seconds))
    worker = start_worker()
    wait_until(lambda: Job.objects.get(pk=job.pk).status == "running")
    wait_until(lambda: child_pids(worker.pid))
    return job, worker


@pytest.mark.slow
def test_sigterm_lets_the_running_job_finish_then_the_worker_exits(owner_client, make_audio, start_worker):
    job, worker = running_job(owner_client, make_audio, start_worker, seconds=30)

    worker.send_signal(signal.SIGTERM)
    signaled_at = timezone.now()
    assert Job.objects.get(pk=job.pk).status == "running", "the signal must arrive mid-job"

    assert worker.wait(timeout=240) == 0
    job.refresh_from_db()
    assert job.status == "succeeded", job.error_message
    assert job.finished_at > signaled_at
    assert job.stems.count() == 4


@pytest.mark.slow
def test_second_sigterm_stops_at_once_and_fails_the_job_with_a_sentence(
    owner_client, make_audio, start_worker, media_root
):
    job, worker = running_job(owner_client, make_audio, start_worker, seconds=120)
    horse = child_pids(worker.pid)[0]

    worker.send_signal(signal.SIGTERM)
    # RQ ignores a repeated signal within a second of the first; an impatient supervisor or a held
    # Ctrl+C keeps sending, also while the worker is failing the job. Send every 5 ms until it exits.
    deadline = time.monotonic() + 60
    while worker.poll() is None and time.monotonic() < deadline:
        worker.send_signal(signal.SIGTERM)
        time.sleep(0.005)

    assert worker.poll() is not None, "the worker must stop within a minute of the second signal"
    job.refresh_from_db()
    assert job.status == "failed"
    assert "worker was shut down while separating this track" in job.error_message
    assert not job.stems.exists()
    assert all("/stems/" not in str(path) for path in media_files(media_root))
    assert not horse_alive(horse)


def horse_alive(pid: int) -> bool:
    status = Path(f"/proc/{pid}/status")
    try:
        return "zombie" not in status.read_text()
    except FileNotFoundError:
        return False
