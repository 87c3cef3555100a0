"""Files on S3: a real S3-compatible server (moto in server mode on 127.0.0.1), not a mock of boto.

The web side (this process) and worker subprocesses each point at the bucket; downloads are
presigned redirects, uploads and stems go up in parts, and no file stays on either local disk.
"""

import hashlib
import http.client
import io
import math
import os
import subprocess
import sys
import threading
import time
import tracemalloc
import urllib.error
import urllib.request
import uuid
import zipfile
from dataclasses import dataclass
from datetime import timedelta
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from io import StringIO
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import boto3
import django_rq
import pytest
from asgiref.sync import async_to_sync
from django.core.exceptions import ImproperlyConfigured
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.core.management import call_command
from django.test import AsyncClient, override_settings
from django.urls import reverse
from django.utils import timezone
from playwright.sync_api import expect

from jobs.api.tokens import create_token
from jobs.background.exports import MSG_STORAGE, render_export
from jobs.background.tasks import MSG_STORAGE_UNREACHABLE
from jobs.limits import storage_used
from jobs.models import Job, MixExport
from jobs.retention import purge_expired
from jobs.storage_errors import UNREACHABLE
from jobs.submission import MSG_UNREACHABLE
from stemsite.storage import MB, storages_config
from tests.conftest import daphne_server, free_port, media_files, running, wait_for_port
from tests.test_browser import log_in
from tests.test_mixer import browser, finished_job, page, state, tone_files  # noqa: F401 (fixtures)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.database_agnostic]

REGION = "us-east-1"
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "stemsite-test", "AWS_SECRET_ACCESS_KEY": "stemsite-test-secret"}


@pytest.fixture(scope="session")
def moto_endpoint(test_root):
    """`python -m moto.server` on a free port; its blanket CORS is off, so only bucket rules apply."""
    port = free_port()
    command = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
    env = {**os.environ, "MOTO_DISABLE_GLOBAL_CORS": "true"}
    endpoint = f"http://127.0.0.1:{port}"
    with running(command, env, test_root / "moto.log") as server:
        wait_for_port(port, server)
        deadline = time.monotonic() + 30
        while True:  # listening is not answering: wait for a real S3 reply
            try:
                urllib.request.urlopen(f"{endpoint}/", timeout=2).close()
                break
            except urllib.error.HTTPError:
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        yield endpoint


@dataclass
class Bucket:
    name: str
    client: object
    env: dict

    def keys(self, prefix: str = "") -> dict[str, int]:
        """Every object under `prefix` and its size, as the server lists them."""
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.name, Prefix=prefix)
        return {item["Key"]: item["Size"] for listed in pages for item in listed.get("Contents", ())}

    def read(self, key: str) -> bytes:
        return self.client.get_object(Bucket=self.name, Key=key)["Body"].read()


@pytest.fixture
def bucket(moto_endpoint, monkeypatch):
    """A new empty bucket; this process's default storage points at it for the test."""
    name = f"stemsite-{uuid.uuid4().hex[:12]}"
    for variable, value in CREDENTIALS.items():
        monkeypatch.setenv(variable, value)
    client = boto3.client(
        "s3", endpoint_url=moto_endpoint, region_name=REGION,
        aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
    )  # fmt: skip
    client.create_bucket(Bucket=name)
    env = {
        **CREDENTIALS,
        "STEMSITE_S3_BUCKET": name,
        "STEMSITE_S3_ENDPOINT_URL": moto_endpoint,
        "STEMSITE_S3_REGION": REGION,
    }
    with override_settings(STORAGES=storages_config(name, moto_endpoint, REGION)):
        yield Bucket(name, client, env)


@pytest.fixture
def worker_media(tmp_path) -> Path:
    folder = tmp_path / "worker-media"
    folder.mkdir()
    return folder


@pytest.fixture
def worker_tmp(tmp_path) -> Path:
    folder = tmp_path / "worker-tmp"
    folder.mkdir()
    return folder


@pytest.fixture
def process_env(process_env, bucket, worker_media, worker_tmp):
    """Subprocesses share only the database, Redis and the bucket: their own empty media folder."""
    return {**process_env, **bucket.env, "MEDIA_ROOT": str(worker_media), "TMPDIR": str(worker_tmp)}


@pytest.fixture
def web_site(process_env, tmp_path):
    """daphne alone, on the bucket (the mixer needs no worker); yields the site's base URL."""
    with daphne_server(process_env, tmp_path / "web.log") as (_, port):
        yield f"http://127.0.0.1:{port}"


class _OutageProxy(BaseHTTPRequestHandler):
    """Passes requests to the bucket until the outage starts, then answers as S3 does in one."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_GET(self):
        self._answer()

    do_HEAD = do_PUT = do_POST = do_DELETE = do_GET

    def _answer(self):
        outage = self.server.outage
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        if outage.down.is_set():
            self._unavailable()
            return
        upstream = http.client.HTTPConnection(outage.upstream, timeout=30)
        headers = {key: value for key, value in self.headers.items() if key.lower() != "host"}
        upstream.request(self.command, self.path, body=body, headers=headers)
        response = upstream.getresponse()
        content = response.read()
        self.send_response(response.status)
        for key, value in response.getheaders():
            if key.lower() not in ("connection", "transfer-encoding"):
                self.send_header(key, value)
        self.end_headers()
        self.wfile.write(content if self.command != "HEAD" else b"")
        upstream.close()
        if self.command == "GET" and outage.after in self.path.split("?")[0]:
            outage.down.set()

    def _unavailable(self):
        body = b"<Error><Code>ServiceUnavailable</Code><Message>Service unavailable</Message></Error>"
        self.send_response(503)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)
        self.close_connection = True


@dataclass
class Outage:
    """A way to the bucket that goes down for good once an object whose key holds `after` was read
    (at once if `after` is empty)."""

    upstream: str
    after: str
    down: threading.Event
    url: str = ""


@pytest.fixture
def outage(moto_endpoint, monkeypatch):
    """`outage(after)`: the Outage; its `url` is the endpoint to give the storage. One retry per call."""
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "2")
    servers = []

    def start(after: str = "") -> Outage:
        state = Outage(urlsplit(moto_endpoint).netloc, after, threading.Event())
        if not after:
            state.down.set()
        server = ThreadingHTTPServer(("127.0.0.1", 0), _OutageProxy)
        server.daemon_threads = True
        server.outage = state
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        state.url = f"http://127.0.0.1:{server.server_address[1]}"
        return state

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def fetch(url: str, headers: dict | None = None):
    """GET from the bucket as a browser would after the site's redirect: no cookies, no signing."""
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=10) as response:
        return response.status, response.headers, response.read()


def follow(response) -> tuple[int, Message, bytes]:
    assert response.status_code == 302, response.content[:300]
    assert response["Cache-Control"] == "private, no-store"
    return fetch(response["Location"])


# Settings and privacy.


def test_s3_settings_refuse_what_would_not_work():
    with pytest.raises(ImproperlyConfigured, match="STEMSITE_S3_ADDRESSING_STYLE"):
        storages_config("bucket", addressing_style="sideways")
    with pytest.raises(ImproperlyConfigured, match="seven days"):
        storages_config("bucket", url_seconds=8 * 24 * 3600)
    assert storages_config(url_seconds=0)["default"]["BACKEND"].endswith("FileSystemStorage")


def test_local_disk_stays_the_default_and_a_bucket_is_private(bucket, owner, make_job):
    job = make_job(owner)

    acl = bucket.client.get_object_acl(Bucket=bucket.name, Key=job.input_file.name)
    assert [grant["Grantee"].get("URI") for grant in acl["Grants"]] == [None], "only the owner's grant"
    assert acl["Grants"][0]["Permission"] == "FULL_CONTROL"
    again = Job(owner=owner, original_name="x.mp3", model_name="htdemucs")
    again.pk = job.pk
    again.input_file.save("Song.wav", ContentFile(b"other"), save=False)
    assert again.input_file.name != job.input_file.name, "a taken name is never overwritten"
    assert bucket.read(job.input_file.name) != b"other"


# Downloads: presigned redirects, the names and types the local path gives, ranges from the bucket.


def test_stem_download_is_a_short_lived_url_with_the_download_name(
    bucket, owner_client, outsider_client, owner, make_job
):
    job = make_job(owner, name="My Song.flac")
    stem = job.stems.get(name="drums")
    url = reverse("stem_file", args=[job.pk, "drums"])

    response = owner_client.get(url)

    query = parse_qs(urlsplit(response["Location"]).query)
    assert query["X-Amz-Expires"] == ["300"]
    assert query["X-Amz-Algorithm"] == ["AWS4-HMAC-SHA256"]
    status, headers, body = follow(response)
    assert status == 200
    assert headers["Content-Disposition"] == 'attachment; filename="My Song - drums.mp3"'
    assert headers["Content-Type"] == "audio/mpeg"
    assert body == bucket.read(stem.file.name)
    _, played, _ = follow(owner_client.get(f"{url}?play"))
    assert played["Content-Disposition"] == 'inline; filename="My Song - drums.mp3"'
    refused = outsider_client.get(url)
    assert refused.status_code == 404
    assert "Location" not in refused


def test_range_on_the_players_url_is_206_with_the_right_bytes_from_the_bucket(
    bucket, owner_client, owner, make_job
):
    job = make_job(owner)
    stem = job.stems.get(name="vocals")
    stored = bucket.read(stem.file.name)

    redirect = owner_client.get(f"{stem.get_absolute_url()}?play", headers={"Range": "bytes=100-1099"})
    assert redirect.status_code == 302
    with urllib.request.urlopen(
        urllib.request.Request(redirect["Location"], headers={"Range": "bytes=100-1099"}), timeout=10
    ) as response:
        assert response.status == 206
        assert response.headers["Content-Range"] == f"bytes 100-1099/{len(stored)}"
        assert response.read() == stored[100:1100]


def test_api_stem_urls_lead_to_the_stems_in_the_bucket(bucket, client, owner, outsider, make_job):
    job = make_job(owner, name="Api Song.wav")
    raw = create_token(owner, "script")[1]
    theirs = create_token(outsider, "theirs")[1]

    listed = client.get(f"/api/jobs/{job.pk}/stems", headers={"Authorization": f"Bearer {raw}"}).json()
    bass = next(item for item in listed if item["name"] == "bass")
    response = client.get(urlsplit(bass["url"]).path, headers={"Authorization": f"Bearer {raw}"})

    status, headers, body = follow(response)
    assert headers["Content-Disposition"] == 'attachment; filename="Api Song - bass.mp3"'
    assert body == bucket.read(job.stems.get(name="bass").file.name)
    refused = client.get(urlsplit(bass["url"]).path, headers={"Authorization": f"Bearer {theirs}"})
    assert refused.status_code == 404


def test_download_all_streams_from_the_bucket_with_flat_memory(bucket, owner_client, owner, make_job):
    job = make_job(owner, name="Big.wav")
    stem_bytes = 4 * MB
    for stem in job.stems.all():
        bucket.client.put_object(Bucket=bucket.name, Key=stem.file.name, Body=os.urandom(stem_bytes))
    url = reverse("stems_zip", args=[job.pk])

    response = owner_client.get(url)
    tracemalloc.start()
    try:
        total = sum(len(chunk) for chunk in response.streaming_content)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert total > 4 * stem_bytes
    assert peak < 2 * MB, f"{peak} bytes held while streaming {total} bytes"
    archive = zipfile.ZipFile(io.BytesIO(b"".join(owner_client.get(url).streaming_content)))
    for stem in job.stems.all():
        assert archive.read(stem.download_name) == bucket.read(stem.file.name)


def test_download_all_streams_under_asgi_too(bucket, owner, make_job):
    """daphne serves the site: Django's ASGI handler must not collect the zip before sending it."""
    job = make_job(owner, name="Big.wav")
    for stem in job.stems.all():
        bucket.client.put_object(Bucket=bucket.name, Key=stem.file.name, Body=os.urandom(4 * MB))

    async def download() -> tuple[int, int]:
        client = AsyncClient()
        await client.aforce_login(owner)
        response = await client.get(reverse("stems_zip", args=[job.pk]))
        tracemalloc.start()
        try:
            total = 0
            async for chunk in response:  # as django.core.handlers.asgi sends a streaming response
                total += len(chunk)
            return total, tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    total, peak = async_to_sync(download)()

    assert total > 16 * MB
    assert peak < 2 * MB, f"{peak} bytes held while streaming {total} bytes"


def test_mix_export_renders_from_and_into_the_bucket(bucket, owner_client, owner, make_job):
    job = make_job(owner, name="Mix Me.wav")
    export = MixExport.objects.create(
        job=job, settings_key="k", settings={"gains": {"drums": 1.0, "bass": 0.5}}, output_format="wav"
    )

    render_export(str(export.pk))

    export.refresh_from_db()
    assert export.status == MixExport.Status.SUCCEEDED, export.error_message
    assert bucket.keys(f"jobs/{job.pk}/exports/") == {export.file.name: export.size}
    status, headers, body = follow(owner_client.get(export.get_absolute_url()))
    assert headers["Content-Disposition"] == 'attachment; filename="Mix Me - mix.wav"'
    assert headers["Content-Type"] == "audio/wav"
    assert body[:4] == b"RIFF"
    assert len(body) == export.size


def test_retention_frees_what_the_bucket_held_and_leaves_nothing(bucket, owner, make_job, make_export):
    old, recent = make_job(owner, name="old.wav"), make_job(owner, name="recent.wav")
    make_export(old)
    bucket.client.put_object(Bucket=bucket.name, Key=f"jobs/{old.pk}/stems/cut-off.wav", Body=b"x" * 1000)
    Job.objects.filter(pk=old.pk).update(finished_at=timezone.now() - timedelta(days=40))
    held = bucket.keys(f"jobs/{old.pk}/")
    assert len(held) == 1 + 4 + 1 + 1

    dry = purge_expired(30, dry_run=True)
    report = purge_expired(30)

    assert dry.freed_bytes == report.freed_bytes == sum(held.values())
    assert bucket.keys(f"jobs/{old.pk}/") == {}
    assert len(bucket.keys(f"jobs/{recent.pk}/")) == 1 + 4


# Uploads: streamed to the bucket in parts, never read whole.


def multipart_body(path: Path, target: Path, boundary: str) -> Path:
    """A browser's multipart upload of `path`, written to disk so the request never sits in memory."""
    with target.open("wb") as out, path.open("rb") as source:
        out.write(
            f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="{path.name}"\r\n'
            "Content-Type: audio/wav\r\n\r\n".encode()
        )
        while block := source.read(MB):
            out.write(block)
        out.write(f"\r\n--{boundary}--\r\n".encode())
    return target


def test_a_large_upload_goes_to_the_bucket_in_parts_without_being_read_whole(
    bucket, owner_client, owner, tmp_path
):
    track = tmp_path / "Long Take.wav"  # 2 min 16 s of 32-bit 96 kHz stereo: 100 MB
    subprocess.run(
        ["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "sine=frequency=220:sample_rate=96000",
         "-t", "136", "-ac", "2", "-c:a", "pcm_s32le", str(track)],
        check=True,
    )  # fmt: skip
    size = track.stat().st_size
    body = multipart_body(track, tmp_path / "body", "stemsite-boundary")

    default_storage.exists("warm-up")  # boto3 loads its service models once per process
    tracemalloc.start()
    try:
        with body.open("rb") as stream:
            response = owner_client.request(
                REQUEST_METHOD="POST", PATH_INFO=reverse("job_create"),
                CONTENT_LENGTH=str(body.stat().st_size),
                CONTENT_TYPE="multipart/form-data; boundary=stemsite-boundary", **{"wsgi.input": stream},
            )  # fmt: skip
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert response.status_code == 302, response.content.decode()[:500]
    job = Job.objects.get(owner=owner)
    head = bucket.client.head_object(Bucket=bucket.name, Key=job.input_file.name)
    assert head["ContentLength"] == size == job.input_size
    assert head["ETag"].strip('"').endswith(f"-{math.ceil(size / (8 * MB))}"), "assembled from 8 MB parts"
    digest = hashlib.sha256()
    stored = bucket.client.get_object(Bucket=bucket.name, Key=job.input_file.name)["Body"]
    for block in stored.iter_chunks(MB):
        digest.update(block)
    assert digest.hexdigest() == hashlib.sha256(track.read_bytes()).hexdigest() == job.content_hash
    assert peak < size / 2, f"{peak / MB:.0f} MB held while uploading {size / MB:.0f} MB"


# The worker shares only the database, Redis and the bucket.


def test_worker_with_its_own_empty_media_folder_separates_into_the_bucket(
    bucket, owner_client, owner, make_audio, run_worker, media_root, worker_media, worker_tmp
):
    source = make_audio("Shared Nothing.wav", seconds=2)
    with source.open("rb") as handle:
        form = {"files": handle, "output_format": "wav16", "quality": "fast"}
        response = owner_client.post(reverse("job_create"), form)
    assert response.status_code == 302, response.content.decode()[:500]
    job = Job.objects.get(owner=owner)

    result = run_worker()

    assert result.returncode == 0, result.stderr
    job.refresh_from_db()
    assert job.status == "succeeded", job.error_message
    stems = list(job.stems.all())
    held = bucket.keys(f"jobs/{job.pk}/")
    assert sorted(held) == sorted(
        [job.input_file.name]
        + [f"jobs/{job.pk}/stems/{stem.name}.wav" for stem in stems]
        + [f"jobs/{job.pk}/previews/{stem.name}.mp3" for stem in stems]
    )
    assert all(held[stem.file.name] == stem.size and stem.peaks for stem in stems)
    assert storage_used(owner) == held[job.input_file.name] + sum(stem.size for stem in stems)
    assert media_files(media_root) == []
    assert media_files(worker_media) == []
    played = owner_client.get(f"{stems[0].get_absolute_url()}?play")
    _, headers, body = follow(played)
    assert headers["Content-Type"] == "audio/mpeg", "the player gets the MP3 preview"
    assert headers["Content-Disposition"] == f'inline; filename="Shared Nothing - {stems[0].name}.mp3"'
    assert body == bucket.read(stems[0].preview.name)
    assert list(worker_tmp.iterdir()) == [], "the worker's temporary files are gone"

    job.delete_with_files()
    assert bucket.keys(f"jobs/{job.pk}/") == {}


# The in-page mixer: its fetch follows the redirect to the bucket, which the bucket's CORS rule allows.


def test_mixer_loads_stems_from_the_bucket_once_its_cors_rule_is_set(
    bucket,
    web_site,
    owner,
    finished_job,  # noqa: F811
    page,  # noqa: F811
):
    log_in(page, web_site)
    page.goto(f"{web_site}{finished_job.get_absolute_url()}")
    expect(page.locator(".stem[data-loading=failed]")).to_have_count(4)

    out = StringIO()
    call_command("set_bucket_cors", origins=[web_site], stdout=out)
    assert web_site in out.getvalue()
    page.reload()
    page.wait_for_function(
        "() => { const s = window.stemsiteMixer && window.stemsiteMixer.state();"
        " return s && Object.values(s.loaded).length === 4 && Object.values(s.loaded).every(Boolean); }"
    )
    assert state(page)["duration"] > 2.9


# The bucket in an outage: a sentence for the user, no job half made, no event lost.


def test_upload_while_the_bucket_is_down_is_refused_with_a_sentence_and_makes_no_job(
    bucket, outage, owner_client, owner, client, make_audio
):
    down = outage()
    song = make_audio("song.mp3", seconds=1)
    token = create_token(owner, "script")[1]

    with override_settings(STORAGES=storages_config(bucket.name, down.url, REGION)):
        with song.open("rb") as handle:
            page = owner_client.post(reverse("job_create"), {"files": handle})
        with song.open("rb") as handle:
            api = client.post("/api/jobs", {"file": handle}, headers={"Authorization": f"Bearer {token}"})

    assert page.status_code == 400
    assert "file storage cannot be reached right now, so nothing was saved" in page.content.decode()
    assert (api.status_code, api["Retry-After"]) == (503, "30")
    assert api.json()["error"] == {"code": "storage_unavailable", "message": MSG_UNREACHABLE, "details": None}
    assert not Job.objects.exists()
    assert bucket.keys() == {}


def test_bucket_going_down_mid_job_fails_it_with_a_sentence_and_still_sends_its_event(
    bucket, outage, owner_client, owner, make_audio, run_worker
):
    """The stems cannot be stored, nor what was stored of them listed and removed: the job still
    ends failed with a sentence, and its webhook event is queued."""
    with make_audio("song.wav", seconds=2).open("rb") as handle:
        owner_client.post(reverse("job_create"), {"files": handle, "output_format": "wav16"})
    job = Job.objects.get()
    Job.objects.filter(pk=job.pk).update(callback_url="https://hooks.example.com/stems")
    down = outage(after="/input/")

    retry_once = {"AWS_MAX_ATTEMPTS": "2"}
    result = run_worker({"STEMSITE_S3_ENDPOINT_URL": down.url, **retry_once}, queues=["separations"])

    assert result.returncode == 0, result.stderr
    assert down.down.is_set(), "the worker read the upload, then the bucket went down"
    job.refresh_from_db()
    assert (job.status, job.error_message) == ("failed", MSG_STORAGE_UNREACHABLE)
    assert not job.stems.exists()
    assert list(bucket.keys(f"jobs/{job.pk}/")) == [job.input_file.name]
    events = [(event.func_name, event.args[1]) for event in django_rq.get_queue("short").jobs]
    assert events == [("jobs.webhooks.deliver_event", "job.failed")]


def test_bucket_going_down_mid_export_fails_it_with_a_sentence(bucket, outage, owner, make_job):
    job = make_job(owner, name="Mix Me.wav")
    export = MixExport.objects.create(
        job=job, settings_key="k", settings={"gains": {"drums": 1.0, "bass": 0.5}}, output_format="wav"
    )
    down = outage(after="/stems/")

    with override_settings(STORAGES=storages_config(bucket.name, down.url, REGION)):
        render_export(str(export.pk))

    export.refresh_from_db()
    assert (export.status, export.error_message) == (MixExport.Status.FAILED, MSG_STORAGE[UNREACHABLE])
    assert bucket.keys(f"jobs/{job.pk}/exports/") == {}
