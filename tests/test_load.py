"""Twenty people uploading at the same moment: every track is separated exactly once, without errors."""

import re
import sys
import threading
import urllib.request
import uuid

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connection
from django.test import Client
from django.urls import reverse

from jobs.models import Job, Stem
from tests.conftest import media_files, running
from tests.test_worker import wait_until

pytestmark = pytest.mark.django_db(transaction=True)

PEOPLE = 20
CSRF_SECRET = "s" * 32  # any 32-letter cookie works as a CSRF secret when the form repeats it


@pytest.fixture
def process_env(process_env):
    """The site signs sessions with this process's key, so sessions made here log people in there."""
    return {**process_env, "SECRET_KEY": settings.SECRET_KEY}


@pytest.fixture
def second_worker(process_env, tmp_path):
    """One more `rqworker` beside the live site's, logging to a file the test can read."""
    command = [sys.executable, "manage.py", "rqworker", settings.STEMSITE_QUEUE]
    with running(command, process_env, tmp_path / "worker2.log", stop_seconds=30) as worker:
        yield worker


def post_upload(base_url: str, session_id: str, name: str, audio: bytes) -> tuple[int, str]:
    boundary = uuid.uuid4().hex
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="csrfmiddlewaretoken"\r\n\r\n'
        f"{CSRF_SECRET}\r\n",
        f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="{name}"\r\n'
        "Content-Type: audio/wav\r\n\r\n",
    ]
    body = "".join(parts).encode() + audio + f"\r\n--{boundary}--\r\n".encode()
    request = urllib.request.Request(
        base_url + reverse("job_create"),
        data=body,
        headers={
            "Content-Type": f"multipart/form-data; boundary={boundary}",
            "Cookie": f"sessionid={session_id}; csrftoken={CSRF_SECRET}",
        },
    )
    opener = urllib.request.build_opener(NoRedirect)
    try:
        with opener.open(request, timeout=120) as response:
            return response.status, response.headers.get("Location", "")
    except urllib.error.HTTPError as error:
        return error.code, error.headers.get("Location", "")


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


@pytest.mark.slow
def test_twenty_simultaneous_uploads_from_twenty_people_each_run_once(
    live_site, second_worker, make_audio, media_root, tmp_path
):
    users = [get_user_model().objects.create(username=f"listener{i}") for i in range(PEOPLE)]
    sessions = []
    for user in users:
        client = Client()
        client.force_login(user)
        sessions.append(client.cookies["sessionid"].value)
    # A different track per person, so no two uploads could be mistaken for one another.
    tracks = [make_audio(f"track{i}.wav", seconds=1 + i / 100).read_bytes() for i in range(PEOPLE)]
    start = threading.Barrier(PEOPLE)
    answers = [None] * PEOPLE

    def person(index: int):
        start.wait()
        answers[index] = post_upload(live_site, sessions[index], f"track{index}.wav", tracks[index])

    threads = [threading.Thread(target=person, args=(i,)) for i in range(PEOPLE)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=180)

    job_page = re.compile(r"^/jobs/[0-9a-f-]{36}/$")
    assert all(status == 302 and job_page.match(location) for status, location in answers), answers
    wait_until(lambda: not Job.objects.filter(status__in=Job.ACTIVE).exists(), timeout=400)

    jobs = list(Job.objects.all())
    assert sorted(job.owner_id for job in jobs) == sorted(user.pk for user in users), "one job per person"
    assert [job.status for job in jobs] == ["succeeded"] * PEOPLE, [job.error_message for job in jobs]
    assert all(job.attempt == 1 for job in jobs)
    assert Stem.objects.count() == 4 * PEOPLE
    assert len(media_files(media_root)) == PEOPLE * (1 + 4)

    def finished_runs() -> list[str]:
        logs = "".join(path.read_text() for path in tmp_path.glob("*.log"))
        return re.findall(r"Job OK \((separate-[0-9a-f-]+-\d+)\)", logs)

    # A worker logs "Job OK" just after the job's row is already succeeded: wait for the last lines.
    wait_until(lambda: len(finished_runs()) >= PEOPLE, timeout=30)
    logs = "".join(path.read_text() for path in tmp_path.glob("*.log"))
    assert "database is locked" not in logs
    assert "Traceback" not in logs
    finished = finished_runs()
    assert sorted(finished) == sorted(job.rq_job_id for job in jobs), "each job ran exactly once"


def test_sqlite_runs_in_wal_mode_with_a_busy_timeout():
    if connection.vendor != "sqlite":
        pytest.skip("only SQLite needs WAL and a busy timeout for concurrent writers")
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA journal_mode")
        assert cursor.fetchone()[0] == "wal"
        cursor.execute("PRAGMA busy_timeout")
        assert cursor.fetchone()[0] >= 5000
