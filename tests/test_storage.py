"""A full or read-only disk while stems are saved: a failed job with a sentence, and no stems at all.

The worker's MEDIA_ROOT is a real small tmpfs (root ignores file modes, so chmod proves nothing):
big enough for the upload, too small for the stems.
"""

import subprocess
import uuid
from pathlib import Path

import pytest
from django.urls import reverse

from jobs.api.tokens import create_token
from jobs.models import Job
from tests.conftest import media_files

pytestmark = pytest.mark.django_db(transaction=True)

# Four 3 s 16-bit stereo WAV stems are about 2 MB; the 3 s MP3 upload is about 50 kB.
SMALL_DISK = "1m"


def _mount(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["mount", *args], capture_output=True, text=True)


@pytest.fixture
def small_disk(tmp_path, settings) -> Path:
    """A 1 MB tmpfs as MEDIA_ROOT for this process and the worker; unmounted afterwards."""
    mountpoint = tmp_path / f"disk-{uuid.uuid4().hex[:8]}"
    mountpoint.mkdir()
    mounted = _mount("-t", "tmpfs", "-o", f"size={SMALL_DISK},mode=0755", "tmpfs", str(mountpoint))
    if mounted.returncode != 0:
        pytest.skip(f"this machine cannot mount a tmpfs (not root, or no CAP_SYS_ADMIN): {mounted.stderr}")
    settings.MEDIA_ROOT = str(mountpoint)
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", "-l", str(mountpoint)], check=False)


def upload_wav_job(client, make_audio) -> Job:
    with make_audio("song.mp3", seconds=3).open("rb") as handle:
        response = client.post(reverse("job_create"), {"files": handle, "output_format": "wav16"})
    assert response.status_code == 302, response.content.decode()[:500]
    return Job.objects.latest("created_at")


@pytest.mark.slow
@pytest.mark.database_agnostic
def test_full_disk_fails_the_job_with_a_sentence_and_keeps_no_stems(
    owner_client, make_audio, run_worker, small_disk
):
    job = upload_wav_job(owner_client, make_audio)

    result = run_worker({"MEDIA_ROOT": str(small_disk)})

    assert result.returncode == 0, result.stderr
    job.refresh_from_db()
    assert job.status == "failed"
    assert "ran out of storage space while saving the stems" in job.error_message
    assert "Traceback" not in job.error_message
    assert not job.stems.exists()
    assert media_files(small_disk) == [small_disk / job.input_file.name]
    assert "No space left on device" in result.stderr, "the operator's log names the cause"
    page = owner_client.get(job.get_absolute_url()).content.decode()
    assert "ran out of storage space" in page
    assert owner_client.get(reverse("stem_file", args=[job.pk, "drums"])).status_code == 404


@pytest.mark.slow
@pytest.mark.database_agnostic
def test_the_same_job_succeeds_once_there_is_space_again(owner_client, make_audio, run_worker, small_disk):
    """The failure is the disk's, not the job's: a retry on a roomier disk stores every stem."""
    job = upload_wav_job(owner_client, make_audio)
    assert run_worker({"MEDIA_ROOT": str(small_disk)}).returncode == 0
    assert _mount("-o", "remount,size=8m", str(small_disk)).returncode == 0

    owner_client.post(reverse("job_retry", args=[job.pk]))
    result = run_worker({"MEDIA_ROOT": str(small_disk)})

    job.refresh_from_db()
    assert job.status == "succeeded", result.stderr
    assert sorted(job.stems.values_list("name", flat=True)) == ["bass", "drums", "other", "vocals"]
    assert all(stem.file.size == stem.size > 500_000 for stem in job.stems.all())
    assert len(media_files(small_disk)) == 1 + 4 + 4  # the upload, the WAV stems and their MP3 previews
    assert all(stem.preview.size > 0 for stem in job.stems.all())


@pytest.mark.slow
@pytest.mark.database_agnostic
def test_read_only_disk_fails_the_job_with_a_sentence_and_keeps_no_stems(
    owner_client, make_audio, run_worker, small_disk
):
    job = upload_wav_job(owner_client, make_audio)
    remounted = _mount("-o", "remount,ro", str(small_disk))
    assert remounted.returncode == 0, remounted.stderr

    result = run_worker({"MEDIA_ROOT": str(small_disk)})

    assert result.returncode == 0, result.stderr
    job.refresh_from_db()
    assert job.status == "failed"
    assert "storage is read-only" in job.error_message
    assert not job.stems.exists()
    assert media_files(small_disk) == [small_disk / job.input_file.name]


def test_upload_that_does_not_fit_on_the_disk_is_refused_with_a_sentence_and_leaves_nothing(
    owner_client, make_audio, small_disk
):
    small = make_audio("small.mp3", seconds=1)
    big = make_audio("big.wav", seconds=8)  # 1.4 MB of 16-bit stereo: more than the 1 MB disk
    with small.open("rb") as first, big.open("rb") as second:
        response = owner_client.post(reverse("job_create"), {"files": [first, second]})

    assert response.status_code == 400
    assert "no room to store uploads right now, so nothing was saved" in response.content.decode()
    assert not Job.objects.exists()
    assert media_files(small_disk) == [], "the small file's job was rolled back, and the partial file removed"


def test_api_upload_to_a_read_only_disk_is_a_507_with_a_sentence(client, owner, make_audio, small_disk):
    song = make_audio("song.mp3", seconds=1)
    token = create_token(owner, "script")[1]
    remounted = _mount("-o", "remount,ro", str(small_disk))
    assert remounted.returncode == 0, remounted.stderr

    with song.open("rb") as handle:
        response = client.post("/api/jobs", {"file": handle}, headers={"Authorization": f"Bearer {token}"})

    assert response.status_code == 507
    assert response.json()["error"]["code"] == "storage_unavailable"
    assert "storage is read-only right now" in response.json()["error"]["message"]
    assert not Job.objects.exists()
