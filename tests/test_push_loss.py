"""Lost websocket pushes: a job never fails for them, and open pages still converge on the database."""

import socket

import pytest
from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async

from jobs.models import Job
from tests.conftest import free_port
from tests.test_consumer import communicator, status_of
from tests.test_worker import upload

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.mark.slow
def test_job_succeeds_when_the_channel_layer_cannot_be_reached(owner_client, make_audio, run_worker):
    job = upload(owner_client, make_audio("song.wav", seconds=2))

    result = run_worker({"CHANNEL_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"})

    assert result.returncode == 0, result.stderr
    job.refresh_from_db()
    assert job.status == "succeeded", job.error_message
    assert job.stems.count() == 4
    assert "Could not publish job updates" in result.stderr


@pytest.fixture
def silent_redis():
    """A port that accepts connections and never answers, like a hung Redis; yields its URL."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(64)
        yield f"redis://127.0.0.1:{server.getsockname()[1]}/0"


@pytest.mark.slow
def test_job_is_not_held_up_by_a_channel_layer_that_never_answers(
    owner_client, make_audio, run_worker, silent_redis
):
    job = upload(owner_client, make_audio("song.wav", seconds=2))

    # Without a bound on each push, every progress tick would wait 30 s and this would time out.
    result = run_worker({"CHANNEL_REDIS_URL": silent_redis, "STEMSITE_PROGRESS_INTERVAL": "0"}, timeout=120)

    assert result.returncode == 0, result.stderr
    job.refresh_from_db()
    assert job.status == "succeeded", job.error_message
    assert result.stderr.count("Could not publish job updates") == 1, result.stderr


def test_job_socket_sends_a_change_that_was_never_published(owner_client, owner, make_job, settings):
    settings.STEMSITE_SOCKET_RESYNC_SECONDS = 0.2
    job = make_job(owner, status="running", progress=10)

    async def watch():
        socket = communicator(f"/ws/jobs/{job.pk}/", owner_client)
        assert (await socket.connect())[0]
        seen = [status_of(await socket.receive_from(timeout=5))]
        await database_sync_to_async(Job.objects.filter(pk=job.pk).update)(progress=40)
        seen.append(status_of(await socket.receive_from(timeout=5)))
        await database_sync_to_async(Job.objects.filter(pk=job.pk).update)(status="succeeded", progress=100)
        seen.append(status_of(await socket.receive_from(timeout=5)))
        await socket.disconnect()
        return seen

    assert async_to_sync(watch)() == [("running", 10), ("running", 40), ("succeeded", None)]


def test_job_socket_sends_nothing_while_nothing_changes(owner_client, owner, make_job, settings):
    settings.STEMSITE_SOCKET_RESYNC_SECONDS = 0.1
    job = make_job(owner, status="running", progress=10)

    async def watch():
        socket = communicator(f"/ws/jobs/{job.pk}/", owner_client)
        assert (await socket.connect())[0]
        await socket.receive_from(timeout=5)
        quiet = await socket.receive_nothing(timeout=1.5, interval=0.1)
        await socket.disconnect()
        return quiet

    assert async_to_sync(watch)()


def test_job_list_socket_sends_rows_that_changed_without_a_push(owner_client, owner, make_job, settings):
    settings.STEMSITE_SOCKET_RESYNC_SECONDS = 0.2
    job = make_job(owner, status="queued")

    async def watch():
        socket = communicator("/ws/jobs/", owner_client)
        assert (await socket.connect())[0]
        first = await socket.receive_from(timeout=5)
        await database_sync_to_async(Job.objects.filter(pk=job.pk).update)(
            status="failed", error_message="stopped"
        )
        changed = await socket.receive_from(timeout=5)
        await socket.disconnect()
        return first, changed

    first, changed = async_to_sync(watch)()
    assert f'id="job-{job.pk}-row" data-status="queued"' in first
    assert f'id="job-{job.pk}-row" data-status="failed"' in changed
