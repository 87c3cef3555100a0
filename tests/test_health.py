"""GET /api/health: 200 only with the database, Redis and a worker usable; 503 saying what is wrong."""

import time

import pytest
from django.urls import reverse

from jobs.background.exports import enqueue_export
from tests.test_faults import private_redis  # noqa: F401 (a fixture)
from tests.test_worker import wait_until

pytestmark = pytest.mark.django_db(transaction=True)


def health(client):
    response = client.get(reverse("health"))
    return response.status_code, response.json()


def test_health_is_200_with_a_worker_running(client, start_worker):
    start_worker()

    status, body = wait_until(lambda: (s := health(client))[0] == 200 and s, timeout=60)

    assert status == 200
    assert body["status"] == "ok"
    assert body["database"] == "ok"
    assert body["redis"] == "ok"
    assert body["workers"] == 1
    assert body["queue_depth"] == 0
    assert body["queues"] == {
        "separations": {"depth": 0, "workers": 1},
        "short": {"depth": 0, "workers": 1},
        "imports": {"depth": 0, "workers": 1},
    }
    assert body["problems"] == []


def test_health_is_503_without_a_worker(client):
    status, body = health(client)

    assert status == 503
    assert body["redis"] == "ok"
    assert body["workers"] == 0
    assert body["problems"] == [
        "No worker is running on the separations queue: separations will not start.",
        "No worker is running on the short queue: mix exports and webhook deliveries will not start.",
        "No worker is running on the imports queue: imports from links will not start.",
    ]


def test_health_needs_no_imports_worker_where_imports_are_off(client, start_worker, settings):
    settings.STEMSITE_URL_IMPORT = "off"
    start_worker(["separations", "short"])

    status, body = wait_until(lambda: (s := health(client))[0] == 200 and s, timeout=60)

    assert body["queues"]["imports"] == {"depth": 0, "workers": 0}
    assert body["problems"] == []


def test_health_is_503_when_no_worker_serves_the_short_queue(
    client, start_worker, owner, make_job, make_export
):
    enqueue_export(make_export(make_job(owner), status="queued"))
    start_worker(["separations"])

    status, body = wait_until(lambda: (s := health(client))[1]["workers"] == 1 and s, timeout=60)

    assert status == 503
    assert body["queue_depth"] == 1
    assert body["queues"] == {
        "separations": {"depth": 0, "workers": 1},
        "short": {"depth": 1, "workers": 0},
        "imports": {"depth": 0, "workers": 0},
    }
    assert body["problems"] == [
        "No worker is running on the short queue: mix exports and webhook deliveries will not start.",
        "No worker is running on the imports queue: imports from links will not start.",
    ]


def test_health_is_503_when_redis_is_stopped_and_answers_quickly(client, private_redis):  # noqa: F811
    private_redis.stop()

    started = time.monotonic()
    status, body = health(client)

    assert time.monotonic() - started < 2.5
    assert status == 503
    assert body["redis"] == "unavailable"
    assert body["database"] == "ok"
    assert body["problems"][0].startswith("Redis cannot be reached")


def test_health_refuses_other_methods(client):
    assert client.post(reverse("health")).status_code == 405
