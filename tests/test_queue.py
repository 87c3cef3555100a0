"""Queue position and time estimates, shown on queued jobs and pushed as the queue moves."""

from datetime import timedelta

import pytest
from asgiref.sync import async_to_sync
from django.urls import reverse
from django.utils import timezone
from redis.connection import AbstractConnection

from jobs.eta import estimates, recent_speeds
from jobs.models import Job
from tests.test_consumer import communicator

pytestmark = pytest.mark.django_db(transaction=True)


def queued_jobs(make_job, owner, count, seconds=60.0):
    base = timezone.now()
    return [
        make_job(
            owner,
            status="queued",
            name=f"t{i}.wav",
            duration_seconds=seconds,
            queued_at=base + timedelta(seconds=i),
        )
        for i in range(count)
    ]


def test_queued_jobs_show_their_place_in_line_and_an_estimate(owner_client, owner, make_job):
    first, second, third = queued_jobs(make_job, owner, 3)
    assert "Next in line" in owner_client.get(first.get_absolute_url()).content.decode()
    page = owner_client.get(third.get_absolute_url()).content.decode()
    assert "Number 3 in line" in page
    assert "done in" in page


def test_estimates_follow_the_measured_speed_of_recent_jobs(owner, make_job):
    done = make_job(owner, duration_seconds=100.0)
    finished = timezone.now()
    Job.objects.filter(pk=done.pk).update(started_at=finished - timedelta(seconds=50), finished_at=finished)
    assert recent_speeds() == {("htdemucs", "full"): pytest.approx(0.5)}

    first, second = queued_jobs(make_job, owner, 2, seconds=120.0)
    current = estimates()
    assert current[first.pk].position == 1
    assert current[first.pk].seconds_left == pytest.approx(60)
    assert current[second.pk].seconds_left == pytest.approx(120), "one worker: the second waits for the first"


def test_running_job_shows_time_left(owner_client, owner, make_job):
    job = make_job(owner, status="running", duration_seconds=600.0, progress=50)
    Job.objects.filter(pk=job.pk).update(started_at=timezone.now() - timedelta(seconds=120))
    page = owner_client.get(job.get_absolute_url()).content.decode()
    assert "about 2 minutes</span> left" in page


def test_position_is_pushed_when_the_queue_moves(owner_client, owner, make_job):
    first, second = queued_jobs(make_job, owner, 2)

    async def watch():
        socket = communicator(f"/ws/jobs/{second.pk}/", owner_client)
        assert (await socket.connect())[0]
        on_connect = await socket.receive_from(timeout=5)
        from channels.db import database_sync_to_async

        await database_sync_to_async(owner_client.post)(reverse("job_cancel", args=[first.pk]))
        pushed = await socket.receive_from(timeout=5)
        await socket.disconnect()
        return on_connect, pushed

    on_connect, pushed = async_to_sync(watch)()
    assert "Number 2 in line" in on_connect
    assert "Next in line" in pushed


def test_estimates_reuse_one_redis_connection(owner, make_job, monkeypatch):
    """Every page, push and socket re-read of an unfinished job asks; a connection per ask was the
    largest cost of 500 open job pages (bench/push.py)."""
    queued_jobs(make_job, owner, 2)
    estimates()
    opened = []
    connect = AbstractConnection.connect

    def counting_connect(self):
        if self._sock is None:
            opened.append(self)
        return connect(self)

    monkeypatch.setattr(AbstractConnection, "connect", counting_connect)
    for _ in range(5):
        assert estimates()
    assert opened == []
