"""A form sent twice, even at the same instant, makes one job; a retry never duplicates active work."""

import threading

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test import Client
from django.urls import reverse

from jobs.engine import audio
from jobs.forms import AcceptedFile
from jobs.models import Job
from jobs.options import JobOptions
from jobs.submission import dedupe_key, submit_job
from tests.conftest import media_files
from tests.test_load import post_upload, process_env  # noqa: F401 - sessions valid on the live site
from tests.test_worker import upload

pytestmark = pytest.mark.django_db(transaction=True)


def test_same_form_posted_twice_makes_one_job(owner_client, make_audio, media_root):
    source = make_audio("song.wav", seconds=1)
    first = upload(owner_client, source)

    with source.open("rb") as handle:
        response = owner_client.post(reverse("job_create"), {"files": handle})

    assert response["Location"] == first.get_absolute_url()
    assert Job.objects.count() == 1
    assert len(media_files(media_root)) == 1


def test_identical_submissions_racing_make_one_job_and_keep_one_upload(owner, make_audio, media_root):
    source = make_audio("song.wav", seconds=1)
    info = audio.probe(str(source))
    options = JobOptions.from_dict({"model": "htdemucs"})
    racers = 6
    start = threading.Barrier(racers)
    results, errors = [], []

    def submit():
        accepted = AcceptedFile(SimpleUploadedFile("song.wav", source.read_bytes()), info, "a" * 64)
        try:
            start.wait()
            results.append(submit_job(owner, accepted, options))
        except Exception as error:  # noqa: BLE001 - any error is the failure this test reports
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=submit) for _ in range(racers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert errors == []
    job = Job.objects.get()
    assert job.dedupe_key == dedupe_key("a" * 64, "htdemucs", job.options)
    assert sorted(result.reused for result in results) == [False] + [True] * (racers - 1)
    assert {result.job.pk for result in results} == {job.pk}
    assert media_files(media_root) == [media_root / job.input_file.name]


def test_two_identical_posts_at_once_to_a_live_site_make_one_job(live_web, owner, make_audio, media_root):
    client = Client()
    client.force_login(owner)
    session = client.cookies["sessionid"].value
    audio_bytes = make_audio("song.wav", seconds=1).read_bytes()
    start = threading.Barrier(2)
    answers = []

    def post():
        start.wait()
        answers.append(post_upload(live_web, session, "song.wav", audio_bytes))

    threads = [threading.Thread(target=post) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    job = Job.objects.get()
    assert answers == [(302, job.get_absolute_url())] * 2
    assert [path for path in media_files(media_root) if "/input/" in str(path)] == [
        media_root / job.input_file.name
    ]


def test_retry_while_an_identical_job_is_active_points_to_that_job(owner_client, owner, make_audio, make_job):
    source = make_audio("song.wav", seconds=1)
    active = upload(owner_client, source)
    failed = make_job(owner, status="failed", dedupe_key=active.dedupe_key, error_message="stopped")

    response = owner_client.post(reverse("job_retry", args=[failed.pk]))

    assert response.status_code == 302
    assert response["Location"] == active.get_absolute_url()
    page = owner_client.get(response["Location"]).content.decode()
    assert "already being separated" in page
    failed.refresh_from_db()
    assert (failed.status, failed.attempt) == ("failed", 1)
    assert Job.objects.filter(status="queued").count() == 1


def test_retry_works_again_once_the_identical_job_has_finished(owner_client, owner, make_audio, make_job):
    source = make_audio("song.wav", seconds=1)
    active = upload(owner_client, source)
    failed = make_job(owner, status="failed", dedupe_key=active.dedupe_key)
    Job.objects.filter(pk=active.pk).update(status="canceled")

    owner_client.post(reverse("job_retry", args=[failed.pk]))

    failed.refresh_from_db()
    assert (failed.status, failed.attempt) == ("queued", 2)
