"""Websockets: a job's socket streams its progress and final state; nobody else's socket opens."""

import re
import subprocess
import sys

import pytest
from asgiref.sync import async_to_sync
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.urls import reverse

from jobs.models import Job
from stemsite.asgi import application
from tests.conftest import ROOT

pytestmark = pytest.mark.django_db(transaction=True)


def session_headers(client) -> list[tuple[bytes, bytes]]:
    cookie = f"sessionid={client.cookies['sessionid'].value}"
    return [(b"origin", b"http://localhost"), (b"cookie", cookie.encode())]


def communicator(path: str, client=None) -> WebsocketCommunicator:
    headers = session_headers(client) if client else [(b"origin", b"http://localhost")]
    return WebsocketCommunicator(application, path, headers=headers)


def upload(client, make_audio, seconds=12):
    with make_audio("song.wav", seconds=seconds).open("rb") as handle:
        client.post(reverse("job_create"), {"files": handle})
    return Job.objects.get()


def status_of(html: str) -> tuple[str, int | None]:
    status = re.search(r'data-status="(\w+)"', html).group(1)
    progress = re.search(r'class="job-progress" value="(\d+)"', html)
    return status, int(progress.group(1)) if progress else None


def test_job_socket_streams_progress_then_success(owner_client, make_audio, process_env):
    job = upload(owner_client, make_audio)

    async def watch():
        socket = communicator(f"/ws/jobs/{job.pk}/", owner_client)
        connected, _ = await socket.connect()
        assert connected
        seen = [status_of(await socket.receive_from(timeout=10))]
        worker = subprocess.Popen(
            [sys.executable, "manage.py", "rqworker", "--burst", settings.STEMSITE_QUEUE],
            cwd=ROOT, env={**process_env, "STEMSITE_PROGRESS_INTERVAL": "0"},
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            while seen[-1][0] not in ("succeeded", "failed"):
                seen.append(status_of(await socket.receive_from(timeout=120)))
        finally:
            worker.wait(timeout=120)
            await socket.disconnect()
        return seen

    seen = async_to_sync(watch)()

    assert seen[0] == ("queued", 0), "the socket sends the current state as soon as it opens"
    assert seen[-1] == ("succeeded", None)
    running = [progress for status, progress in seen if status == "running"]
    assert len(running) >= 3, seen
    assert running == sorted(running), seen
    assert 0 < running[-1] < 100, seen


def test_another_users_job_socket_is_refused(owner_client, outsider_client, make_audio):
    job = upload(owner_client, make_audio, seconds=1)

    async def try_connect():
        socket = communicator(f"/ws/jobs/{job.pk}/", outsider_client)
        connected, _ = await socket.connect()
        await socket.disconnect()
        return connected

    assert async_to_sync(try_connect)() is False


def test_anonymous_sockets_are_refused(owner_client, make_audio):
    job = upload(owner_client, make_audio, seconds=1)

    async def try_connect(path):
        socket = communicator(path)
        connected, _ = await socket.connect()
        await socket.disconnect()
        return connected

    assert async_to_sync(try_connect)(f"/ws/jobs/{job.pk}/") is False
    assert async_to_sync(try_connect)("/ws/jobs/") is False


def test_socket_from_a_foreign_origin_is_refused(owner_client, make_audio):
    job = upload(owner_client, make_audio, seconds=1)

    async def try_connect():
        headers = [(b"origin", b"http://evil.example")] + session_headers(owner_client)[1:]
        socket = WebsocketCommunicator(application, f"/ws/jobs/{job.pk}/", headers=headers)
        connected, _ = await socket.connect()
        await socket.disconnect()
        return connected

    assert async_to_sync(try_connect)() is False


def test_job_list_socket_sends_own_rows_and_updates(owner_client, outsider_client, make_audio):
    job = upload(owner_client, make_audio, seconds=1)

    async def watch():
        mine = communicator("/ws/jobs/", owner_client)
        theirs = communicator("/ws/jobs/", outsider_client)
        assert (await mine.connect())[0]
        assert (await theirs.connect())[0]
        first = await mine.receive_from(timeout=5)
        other_first = await theirs.receive_from(timeout=5)
        from channels.db import database_sync_to_async

        from jobs.events import publish_job_state

        await database_sync_to_async(publish_job_state)(job)
        pushed = await mine.receive_from(timeout=5)
        nothing_for_outsider = await theirs.receive_nothing(timeout=0.5)
        await mine.disconnect()
        await theirs.disconnect()
        return first, other_first, pushed, nothing_for_outsider

    first, other_first, pushed, nothing_for_outsider = async_to_sync(watch)()
    assert f'id="job-{job.pk}-row"' in first
    assert str(job.pk) not in other_first
    assert f'id="job-{job.pk}-row"' in pushed
    assert nothing_for_outsider


def test_idle_socket_stays_open_and_still_receives_pushes(owner_client, owner, make_job):
    job = make_job(owner, status="running")

    async def watch():
        from channels.db import database_sync_to_async

        from jobs.events import publish_job_state

        socket = communicator(f"/ws/jobs/{job.pk}/", owner_client)
        assert (await socket.connect())[0]
        await socket.receive_from(timeout=5)
        quiet = await socket.receive_nothing(timeout=12, interval=0.5)
        await database_sync_to_async(publish_job_state)(job)
        pushed = await socket.receive_from(timeout=5)
        await socket.disconnect()
        return quiet, pushed

    quiet, pushed = async_to_sync(watch)()
    assert quiet
    assert f'id="job-{job.pk}-status"' in pushed
