"""Per-user limits: uploads per hour, tracks in progress, storage; the account page shows them."""

import threading
from datetime import timedelta

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.urls import reverse
from django.utils import timezone

from jobs.engine import audio
from jobs.forms import AcceptedFile
from jobs.limits import LimitExceeded
from jobs.models import Job
from jobs.options import JobOptions
from jobs.submission import submit_within_limits
from tests.conftest import media_files

pytestmark = pytest.mark.django_db


def upload(client, *paths, htmx=False):
    headers = {"HX-Request": "true"} if htmx else {}
    handles = [path.open("rb") for path in paths]
    try:
        return client.post(reverse("job_create"), {"files": handles}, headers=headers)
    finally:
        for handle in handles:
            handle.close()


def refused(response, words: str, media_root, jobs_before: int) -> None:
    """A clear error on the form, and nothing stored: no new row, no new file."""
    assert response.status_code in (200, 400)
    assert words in response.content.decode()
    assert Job.objects.count() == jobs_before
    stored = {str(path.relative_to(media_root)) for path in media_files(media_root) if "/input/" in str(path)}
    assert stored == {job.input_file.name for job in Job.objects.all()}, "an upload file without a job"


def test_upload_records_its_size(owner_client, make_audio):
    path = make_audio("song.wav", seconds=1)
    upload(owner_client, path)
    assert Job.objects.get().input_size == path.stat().st_size


def test_uploads_per_hour_are_limited(owner_client, owner, make_job, make_audio, settings, media_root):
    settings.STEMSITE_UPLOADS_PER_HOUR = 2
    make_job(owner, status="succeeded")
    make_job(owner, status="succeeded", created_at=timezone.now() - timedelta(hours=2))  # outside the hour
    assert upload(owner_client, make_audio("one.wav", seconds=1)).status_code == 302

    response = upload(owner_client, make_audio("two.wav", seconds=1), htmx=True)
    refused(response, "You can upload 2 tracks per hour and have uploaded 2 in the last hour", media_root, 3)


def test_a_batch_over_the_hourly_limit_is_refused_whole(owner_client, make_audio, settings, media_root):
    settings.STEMSITE_UPLOADS_PER_HOUR = 2
    response = upload(owner_client, *(make_audio(f"{n}.wav", seconds=1) for n in range(3)))
    refused(response, "2 more can go now", media_root, 0)
    assert response.status_code == 400
    assert media_files(media_root) == []


def test_tracks_in_progress_are_limited(
    owner_client, owner, outsider, make_job, make_audio, settings, media_root
):
    settings.STEMSITE_MAX_ACTIVE_JOBS = 2
    make_job(owner, status="queued")
    make_job(owner, status="running")
    make_job(owner, status="failed")
    make_job(outsider, status="queued")

    response = upload(owner_client, make_audio("song.wav", seconds=1))
    refused(response, "You can have 2 tracks waiting or being separated at once and have 2", media_root, 4)


def test_storage_quota_counts_uploads_and_stems(
    owner_client, owner, make_job, make_audio, settings, media_root
):
    job = make_job(owner, input_size=800 * 1024)  # and four stems, each a real 1 s mp3
    used = 800 * 1024 + sum(job.stems.values_list("size", flat=True))
    new = make_audio("song.wav", seconds=2)
    settings.STEMSITE_STORAGE_QUOTA_MB = 1
    assert used + new.stat().st_size > 1024 * 1024

    response = upload(owner_client, new)
    refused(response, "would take you over your storage quota", media_root, 1)
    assert f"{used / 1024 / 1024:.1f} MB of 1 MB used" in response.content.decode()

    job.delete_with_files()
    assert upload(owner_client, new).status_code == 302, "deleting a track makes room"


def test_zero_turns_a_limit_off(owner_client, owner, make_job, make_audio, settings):
    settings.STEMSITE_UPLOADS_PER_HOUR = 0
    settings.STEMSITE_MAX_ACTIVE_JOBS = 0
    settings.STEMSITE_STORAGE_QUOTA_MB = 0
    for _ in range(3):
        make_job(owner, status="queued", input_size=10**12)
    assert upload(owner_client, make_audio("song.wav", seconds=1)).status_code == 302


def test_account_page_shows_usage_limits_and_password_link(owner_client, owner, outsider, make_job, settings):
    settings.STEMSITE_STORAGE_QUOTA_MB = 10
    settings.STEMSITE_UPLOADS_PER_HOUR = 7
    settings.STEMSITE_MAX_ACTIVE_JOBS = 3
    job = make_job(owner, input_size=1024 * 1024)
    make_job(owner, status="queued", input_size=1024 * 1024)
    make_job(outsider, input_size=5 * 1024 * 1024)
    used = 2 * 1024 * 1024 + sum(job.stems.values_list("size", flat=True))

    page = owner_client.get(reverse("account")).content.decode().replace("\xa0", " ")
    assert f"{used / 1024 / 1024:.1f} MB of 10.0 MB used ({round(100 * used / (10 * 1024 * 1024))}%)" in page
    assert "Uploads in the last hour: 2 of 7" in page
    assert "Tracks waiting or being separated: 1 of 3" in page
    assert f'href="{reverse("password_change")}"' in page


def test_top_bar_user_name_links_to_the_account_page(owner_client):
    page = owner_client.get(reverse("job_list")).content.decode()
    assert f'<a href="{reverse("account")}">owner</a>' in page


def test_account_page_needs_a_login(client):
    response = client.get(reverse("account"))
    assert response.status_code == 302
    assert reverse("login") in response["Location"]


def accepted_file(path, content_hash: str, upload=None) -> AcceptedFile:
    upload = upload or SimpleUploadedFile(path.name, path.read_bytes())
    return AcceptedFile(upload, audio.probe(str(path)), content_hash)


@pytest.mark.django_db(transaction=True)
def test_uploads_racing_cannot_both_pass_a_limit_only_one_fits(owner, make_audio, settings, media_root):
    settings.STEMSITE_MAX_ACTIVE_JOBS = 2
    source = make_audio("song.wav", seconds=1)
    options = JobOptions.from_dict({"model": "htdemucs"})
    racers = 5
    start = threading.Barrier(racers)
    submitted, refusals, errors = [], [], []

    def submit(number: int):
        files = [accepted_file(source, f"{number:064d}")]  # a different track each time
        try:
            start.wait()
            submitted.extend(submit_within_limits(owner, files, options))
        except LimitExceeded as refusal:
            refusals.append(str(refusal))
        except Exception as error:  # noqa: BLE001 - any other error is the failure this test reports
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=submit, args=(number,)) for number in range(racers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert errors == []
    assert Job.objects.filter(owner=owner).count() == 2
    assert len(submitted) == 2
    assert len(refusals) == racers - 2
    assert all("You can have 2 tracks waiting" in refusal for refusal in refusals)
    stored = {str(path.relative_to(media_root)) for path in media_files(media_root)}
    assert stored == {job.input_file.name for job in Job.objects.all()}


class BrokenUpload(SimpleUploadedFile):
    """A client that went away mid-upload: reading the rest of its body fails."""

    def chunks(self, chunk_size=None):
        yield b"RIFF"
        raise OSError("connection reset by peer")


@pytest.mark.django_db(transaction=True)
def test_a_batch_that_fails_part_way_leaves_no_job_and_no_file(owner, make_audio, media_root):
    first, second = make_audio("one.wav", seconds=1), make_audio("two.wav", seconds=1)
    files = [
        accepted_file(first, "1" * 64),
        accepted_file(second, "2" * 64, upload=BrokenUpload("two.wav", second.read_bytes())),
    ]

    with pytest.raises(OSError, match="connection reset"):
        submit_within_limits(owner, files, JobOptions.from_dict({"model": "htdemucs"}))

    assert Job.objects.count() == 0
    assert media_files(media_root) == []
