"""Traces: one per job from the upload's request to its stored stems, sent to a real OTLP/HTTP
receiver on this machine by the site's own processes (daphne, workers, the reconciler)."""

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request

import aiohttp
import pytest
from django.conf import settings
from django.test import Client
from django.urls import reverse
from rq.job import Job as RQJob

from jobs import tracing
from jobs.control import cancel_job
from jobs.models import Job
from tests.conftest import ROOT, daphne_server
from tests.otlp_receiver import OtlpReceiver, span_tree
from tests.test_faults import FAST, supervisor  # noqa: F401  (a fixture)
from tests.test_load import CSRF_SECRET, NoRedirect, post_upload
from tests.test_webhooks import ALLOW_LOCAL
from tests.test_webhooks import Receiver as WebhookReceiver
from tests.test_worker import child_pids, wait_until

pytestmark = pytest.mark.django_db(transaction=True)

# The SDK's own variables, as an operator sets them; spans leave each process within 50 ms.
TRACED = {"OTEL_TRACES_SAMPLER": "always_on", "OTEL_BSP_SCHEDULE_DELAY": "50"}


@pytest.fixture
def process_env(process_env):
    """The site signs sessions with this process's key, so sessions made here log people in there."""
    return {**process_env, "SECRET_KEY": settings.SECRET_KEY}


@pytest.fixture
def receiver():
    with OtlpReceiver() as running:
        yield running


@pytest.fixture
def traced_env(process_env, receiver):
    return {**process_env, **TRACED, "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint}


def session_for(user) -> str:
    client = Client()
    client.force_login(user)
    return client.cookies["sessionid"].value


def upload_through_the_page(base_url: str, user, audio_path) -> Job:
    status, location = post_upload(base_url, session_for(user), audio_path.name, audio_path.read_bytes())
    assert status == 302, (status, location)
    return Job.objects.get(pk=location.strip("/").rsplit("/", 1)[-1])


def job_trace(receiver: OtlpReceiver, job: Job) -> str:
    """The trace id of the request that queued the job (its `enqueue separation` span)."""
    enqueue = wait_until(
        lambda: [
            span
            for span in receiver.received()
            if span.name == "enqueue separation" and span.attributes.get("stemsite.job.id") == str(job.pk)
        ],
        timeout=30,
    )
    return enqueue[0].trace_id


def one(spans, name, **attributes):
    found = [
        s for s in spans if s.name == name and all(s.attributes.get(k) == v for k, v in attributes.items())
    ]
    assert len(found) == 1, (name, attributes, span_tree(spans))
    return found[0]


@pytest.mark.slow
def test_an_upload_through_the_page_gives_one_trace_from_request_to_stored_stems(
    owner, make_audio, traced_env, receiver, run_worker, tmp_path
):
    with daphne_server(traced_env, tmp_path / "web.log") as (_, port):
        job = upload_through_the_page(f"http://127.0.0.1:{port}", owner, make_audio("Song.wav", seconds=4))
        trace_id = job_trace(receiver, job)

    result = run_worker(traced_env)

    assert result.returncode == 0, result.stderr
    job.refresh_from_db()
    assert job.status == "succeeded", job.error_message
    spans = wait_until(
        lambda: (found := receiver.trace(trace_id)) and any(s.name == "separation" for s in found) and found,
        timeout=30,
    )
    tree = span_tree(spans)
    by_id = {span.span_id: span for span in spans}
    [root] = [span for span in spans if not span.parent_id]
    assert (root.name, root.kind, root.service) == ("POST jobs/new/", "server", "stemsite-web"), tree
    assert all(span.parent_id in by_id for span in spans if span is not root), "a parent is missing:\n" + tree
    enqueue = one(spans, "enqueue separation")
    assert enqueue.kind == "producer"
    assert enqueue.service == "stemsite-web"
    assert one(spans, "store upload").parent_id != ""
    wait = one(spans, "queue wait")
    attempt = one(spans, "separation")
    assert wait.parent_id == attempt.parent_id == enqueue.span_id, tree
    assert (attempt.kind, attempt.service, attempt.attributes["stemsite.job.attempt"]) == (
        "consumer",
        "stemsite-worker",
        1,
    )
    assert wait.start_ns >= enqueue.start_ns, tree
    assert wait.end_ns <= attempt.start_ns + 1_000_000, tree
    assert attempt.error is None
    assert not attempt.links
    model = [
        s for s in spans if s.name in ("model load", "model cache hit") and s.parent_id == attempt.span_id
    ]
    assert model, tree
    separate = one(spans, "separate")
    assert separate.parent_id == attempt.span_id
    assert separate.error is None
    phases = [s for s in spans if s.parent_id == separate.span_id and "db.system" not in s.attributes]
    names = [s.name for s in sorted(phases, key=lambda s: s.start_ns)]
    for phase in (
        "fetch upload",
        "model cache hit",
        "prepare engine",
        "decode",
        "model pass",
        "encode",
        "store",
    ):
        assert phase in names, tree
    assert names.count("encode") == 4, tree
    assert names[-1] == "publish", tree
    passes = [s for s in phases if s.name == "model pass"]
    assert {(s.attributes["stemsite.model.index"], s.attributes["stemsite.shift"]) for s in passes} == {
        (0, 0)
    }
    store = one(phases, "store")
    assert separate.start_ns <= store.start_ns
    assert store.end_ns <= separate.end_ns <= attempt.end_ns
    assert any(s.attributes.get("db.system") == "redis" for s in spans if s.service == "stemsite-worker"), (
        tree
    )
    assert {
        s.trace_id for s in receiver.received() if s.attributes.get("stemsite.job.id") == str(job.pk)
    } == {trace_id}, "every span about the job is in its one trace"
    job_lines = [line for line in result.stderr.splitlines() if f"job {job.pk}" in line]
    assert job_lines, result.stderr
    assert all(f"trace {trace_id}" in line for line in job_lines), result.stderr


def post_form(base_url: str, user, path: str) -> int:
    """POST a form with no fields but its CSRF token, as the page's buttons do; the status code."""
    request = urllib.request.Request(
        base_url + path,
        data=f"csrfmiddlewaretoken={CSRF_SECRET}".encode(),
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "Cookie": f"sessionid={session_for(user)}; csrftoken={CSRF_SECRET}",
        },
    )
    try:
        with urllib.request.build_opener(NoRedirect).open(request, timeout=60) as response:
            return response.status
    except urllib.error.HTTPError as answer:
        return answer.code


def open_page_socket(base_url: str, user, job: Job) -> str:
    """Open the job page's websocket as a browser does; the first message (the job's state)."""

    headers = {"Origin": base_url, "Cookie": f"sessionid={session_for(user)}"}

    async def catch_up() -> str:
        async with aiohttp.ClientSession() as http:
            url = base_url.replace("http://", "ws://") + f"/ws/jobs/{job.pk}/"
            async with http.ws_connect(url, headers=headers) as socket:
                return (await socket.receive(timeout=30)).data

    return asyncio.run(catch_up())


@pytest.mark.database_agnostic
def test_open_pages_sockets_work_and_are_traced_from_connect_to_close(
    owner, make_audio, traced_env, receiver, tmp_path
):
    with daphne_server(traced_env, tmp_path / "web.log") as (_, port):
        base = f"http://127.0.0.1:{port}"
        job = upload_through_the_page(base, owner, make_audio("Song.wav", seconds=1))

        first = open_page_socket(base, owner, job)

        assert f'id="job-{job.pk}-status"' in first
        [socket] = wait_until(
            lambda: [s for s in receiver.received() if s.name == "WEBSOCKET /ws/jobs/{job_id}/"], timeout=30
        )
    assert (socket.kind, socket.service, socket.error) == ("server", "stemsite-web", None)


@pytest.mark.database_agnostic
def test_a_retry_starts_a_trace_of_its_own_linked_to_the_upload(
    owner, make_audio, traced_env, receiver, redis_db, tmp_path
):
    with daphne_server(traced_env, tmp_path / "web.log") as (_, port):
        base = f"http://127.0.0.1:{port}"
        job = upload_through_the_page(base, owner, make_audio("Song.wav", seconds=1))
        upload_trace = job_trace(receiver, job)
        assert post_form(base, owner, reverse("job_cancel", args=[job.pk])) == 302

        assert post_form(base, owner, reverse("job_retry", args=[job.pk])) == 302

        retried = wait_until(
            lambda: [
                s
                for s in receiver.received()
                if s.name == "enqueue separation" and s.trace_id != upload_trace
            ],
            timeout=30,
        )
    [enqueue] = retried
    assert enqueue.attributes["stemsite.job.attempt"] == 2
    assert [link[0] for link in enqueue.links] == [upload_trace]
    job.refresh_from_db()
    meta = RQJob.fetch(job.rq_job_id, connection=redis_db).meta
    assert meta[tracing.LINK_META] == job.trace_parent, "the worker's attempt span links to it too"
    assert meta[tracing.TRACE_META]["traceparent"].split("-")[1] == enqueue.trace_id
    request = [s for s in receiver.trace(enqueue.trace_id) if not s.parent_id]
    assert [(s.name, s.service) for s in request] == [("POST jobs/<uuid:job_id>/retry/", "stemsite-web")]


@pytest.mark.database_agnostic
@pytest.mark.slow
@pytest.mark.database_agnostic
def test_a_killed_and_recovered_job_shows_both_attempts(
    owner,
    make_audio,
    traced_env,
    receiver,
    supervisor,  # noqa: F811
    tmp_path,
):
    with daphne_server(traced_env, tmp_path / "web.log") as (_, port):
        job = upload_through_the_page(f"http://127.0.0.1:{port}", owner, make_audio("long.flac", seconds=30))
        first_trace = job_trace(receiver, job)
    workers = supervisor({**FAST, **traced_env}, queues="separations")
    wait_until(lambda: any(s.name == "decode" for s in receiver.trace(first_trace)), timeout=60)
    [worker] = wait_until(lambda: child_pids(workers.pid))

    os.kill(worker, signal.SIGKILL)

    wait_until(lambda: Job.objects.get(pk=job.pk).is_finished, timeout=180)
    job.refresh_from_db()
    assert (job.status, job.attempt, job.recoveries) == ("succeeded", 2, 1), job.error_message
    second = wait_until(
        lambda: [
            s
            for s in receiver.received()
            if s.name == "separation" and s.attributes.get("stemsite.job.attempt") == 2 and s.end_ns
        ],
        timeout=30,
    )[0]
    first = receiver.trace(first_trace)
    assert one(first, "queue wait", **{"stemsite.job.attempt": 1})
    assert any(s.name == "decode" for s in first), span_tree(first)
    assert second.trace_id != first_trace
    assert [link[0] for link in second.links] == [first_trace], "the new attempt links to the upload's trace"
    recovery = receiver.trace(second.trace_id)
    tree = span_tree(recovery)
    [root] = [s for s in recovery if not s.parent_id]
    assert (root.name, root.service) == ("reconcile: recover lost run", "stemsite-reconciler"), tree
    assert root.attributes["stemsite.job.lost_attempt"] == 1
    assert [link[0] for link in root.links] == [first_trace]
    enqueue = one(recovery, "enqueue separation")
    assert enqueue.parent_id == root.span_id, tree
    assert second.parent_id == enqueue.span_id, tree
    separate = wait_until(
        lambda: [s for s in receiver.trace(second.trace_id) if s.name == "separate"], timeout=30
    )
    stored = [
        s for s in receiver.trace(second.trace_id) if s.name == "store" and s.parent_id == separate[0].span_id
    ]
    assert stored, span_tree(receiver.trace(second.trace_id))


def _default_endpoint_port() -> int:
    """The SDK's default OTLP/HTTP port (4318) when free here, so a stray exporter would reach the
    receiver; another free port otherwise."""
    with socket.socket() as probe:
        return 4318 if probe.connect_ex(("127.0.0.1", 4318)) != 0 else 0


PROBE = """
import json, sys
import django
django.setup()
import stemsite.asgi
from jobs import tracing
from jobs.background.worker import SeparationWorker
from opentelemetry import trace
tracing.setup("worker")
# redis-py imports the metrics SDK itself when it is installed; the tracing SDK, an exporter or an
# instrumentation would only be imported by a tracing setup.
TRACING_MODULES = ("opentelemetry.sdk.trace", "opentelemetry.exporter", "opentelemetry.instrumentation")
print(json.dumps({
    "provider": type(trace.get_tracer_provider()).__name__,
    "sdk": sorted(m for m in sys.modules if m.startswith(TRACING_MODULES)),
}))
"""


def probe(env: dict) -> dict:
    """What the web entry point and a worker set up in a fresh process with this environment."""
    done = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


@pytest.mark.database_agnostic
@pytest.mark.slow
def test_without_an_endpoint_nothing_is_exported_and_no_exporter_exists(
    owner, make_audio, process_env, run_worker, tmp_path
):
    unset = {**process_env, **TRACED, "OTEL_SERVICE_NAME": "stemsite"}
    unset = {k: v for k, v in unset.items() if not k.startswith("OTEL_EXPORTER_OTLP")}
    with OtlpReceiver(port=_default_endpoint_port()) as receiver:
        with daphne_server(unset, tmp_path / "web.log") as (_, port):
            job = upload_through_the_page(
                f"http://127.0.0.1:{port}", owner, make_audio("Song.wav", seconds=2)
            )
        result = run_worker(unset)
        assert result.returncode == 0, result.stderr
        assert Job.objects.get(pk=job.pk).status == "succeeded"
        assert receiver.requests == 0

    assert probe(unset) == {"provider": "ProxyTracerProvider", "sdk": []}
    traced = probe({**unset, "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9"})
    assert traced["provider"] == "TracerProvider"
    assert "opentelemetry.sdk.trace" in traced["sdk"]


@pytest.mark.database_agnostic
def test_a_webhook_delivery_is_traced_down_to_its_post(owner, make_job, traced_env, receiver, run_worker):
    callback = WebhookReceiver(statuses=[500])
    try:
        job = make_job(owner, status="queued", callback_url=callback.url)
        assert cancel_job(job)  # queues the job's event

        result = run_worker({**traced_env, **ALLOW_LOCAL}, queues=[settings.STEMSITE_SHORT_QUEUE])
    finally:
        callback.close()

    assert result.returncode == 0, result.stderr
    assert len(callback.requests) == 1
    delivery = wait_until(
        lambda: [s for s in receiver.received() if s.name == "webhook delivery"], timeout=30
    )[0]
    spans = receiver.trace(delivery.trace_id)
    tree = span_tree(spans)
    assert delivery.attributes["stemsite.job.id"] == str(job.pk), tree
    deliver = one(spans, "deliver webhook")
    post = one(spans, "POST callback")
    assert deliver.parent_id == delivery.span_id, tree
    assert (post.parent_id, post.kind) == (deliver.span_id, "client"), tree
    assert post.error == "The receiver answered HTTP 500.", tree
