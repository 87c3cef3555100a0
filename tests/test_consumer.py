"""Websockets: a job's socket streams its progress and final state; nobody else's socket opens."""

import asyncio
import re
import subprocess
import sys
import uuid

import pytest
from asgiref.sync import async_to_sync
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.urls import reverse

from jobs.models import Job
from stemsite.asgi import application
from stemsite.channel_layer import channel_layers
from tests.conftest import ROOT, TEST_REDIS_URL

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


@pytest.mark.slow
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

        from jobs.realtime.events import publish_job_state

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


@pytest.mark.slow
def test_idle_socket_stays_open_and_still_receives_pushes(owner_client, owner, make_job):
    job = make_job(owner, status="running")

    async def watch():
        from channels.db import database_sync_to_async

        from jobs.realtime.events import publish_job_state

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


def test_sites_on_other_redis_databases_do_not_hear_each_others_pushes():
    """Redis pub/sub ignores the database number: two sites sharing one Redis on databases 1 and 2
    (or two test processes) each heard the other's pushes for a job or user with the same id."""
    from channels_redis.pubsub import RedisPubSubChannelLayer

    server = TEST_REDIS_URL.rpartition("/")[0]
    group = f"user-{uuid.uuid4().hex}"

    def layer(database: int) -> RedisPubSubChannelLayer:
        return RedisPubSubChannelLayer(**channel_layers(f"{server}/{database}")["default"]["CONFIG"])

    async def first_heard():
        listener, other_site, same_site = layer(1), layer(2), layer(1)
        channel = await listener.new_channel()
        await listener.group_add(group, channel)
        await other_site.group_send(group, {"type": "push", "site": "other"})
        await same_site.group_send(group, {"type": "push", "site": "same"})
        heard = await asyncio.wait_for(listener.receive(channel), timeout=5)
        for each in (listener, other_site, same_site):
            await each.flush()
        return heard["site"]

    assert async_to_sync(first_heard)() == "same"


def test_a_push_is_forwarded_without_a_database_round(owner_client, owner, make_job, monkeypatch):
    """Channels closes stale database connections before every handler, a thread hop each: with 500
    sockets on one job that was most of the cost of a push (bench/push.py). Forwarding needs none."""
    import channels.consumer
    from channels.layers import get_channel_layer

    from jobs.realtime.events import EVENT_TYPE, job_group

    job = make_job(owner, status="running")
    hops = []
    close = channels.consumer.aclose_old_connections

    async def counting_close():
        hops.append(1)
        return await close()

    monkeypatch.setattr(channels.consumer, "aclose_old_connections", counting_close)

    async def watch():
        socket = communicator(f"/ws/jobs/{job.pk}/", owner_client)
        assert (await socket.connect())[0]
        await socket.receive_from(timeout=5)
        hops.clear()
        await get_channel_layer().group_send(job_group(job.pk), {"type": EVENT_TYPE, "html": "<p>pushed</p>"})
        pushed = await socket.receive_from(timeout=5)
        hops_while_forwarding = len(hops)
        await socket.disconnect()
        return pushed, hops_while_forwarding

    assert async_to_sync(watch)() == ("<p>pushed</p>", 0)


def test_socket_skips_its_database_look_while_pushes_arrive_then_catches_up(
    owner_client, owner, make_job, settings
):
    """The look at the database is the safety net for lost pushes; while pushes arrive it only
    costs (bench/push.py). Once they stop, a change no push announced still reaches the page."""
    from channels.layers import get_channel_layer

    from jobs.realtime.events import EVENT_TYPE, job_group

    settings.STEMSITE_SOCKET_RESYNC_SECONDS = 0.2
    job = make_job(owner, status="running")
    Job.objects.filter(pk=job.pk).update(progress=10)

    async def watch():
        from channels.db import database_sync_to_async

        socket = communicator(f"/ws/jobs/{job.pk}/", owner_client)
        assert (await socket.connect())[0]
        first = status_of(await socket.receive_from(timeout=5))
        await database_sync_to_async(Job.objects.filter(pk=job.pk).update)(progress=55)  # never pushed
        during, layer = [], get_channel_layer()
        for _ in range(30):  # 1.5 s of pushes, 7 resync intervals
            await layer.group_send(job_group(job.pk), {"type": EVENT_TYPE, "html": "<p>push</p>"})
            during.append(await socket.receive_from(timeout=5))
            await asyncio.sleep(0.05)
        after = status_of(await socket.receive_from(timeout=5))
        await socket.disconnect()
        return first, during, after

    first, during, after = async_to_sync(watch)()
    assert first == ("running", 10)
    assert during == ["<p>push</p>"] * 30
    assert after == ("running", 55)


def test_a_page_gets_its_block_again_only_when_the_job_moved_on(owner_client, owner, make_job):
    """The job page's socket names the block the page shows. Sent again on connect, the same block
    replaced the player and a form a person was clicking (a revoke was lost that way)."""
    job = make_job(owner, status="running", progress=40)
    page = owner_client.get(job.get_absolute_url()).content.decode()
    path = re.search(r'ws-connect="(/ws/jobs/[^"]+)"', page).group(1)

    async def connect_twice():
        from channels.db import database_sync_to_async

        socket = communicator(path, owner_client)
        assert (await socket.connect())[0]
        unchanged = await socket.receive_nothing(timeout=2, interval=0.1)
        await socket.disconnect()
        await database_sync_to_async(Job.objects.filter(pk=job.pk).update)(progress=60)
        socket = communicator(path, owner_client)
        assert (await socket.connect())[0]
        moved_on = await socket.receive_from(timeout=5)
        await socket.disconnect()
        return unchanged, moved_on

    unchanged, moved_on = async_to_sync(connect_twice)()
    assert unchanged, "nothing is sent while the page shows what the job is"
    assert status_of(moved_on) == ("running", 60)
