"""The worker: a real `rqworker --burst` process separates queued jobs with a real Demucs model."""

import os
import signal
import time
from pathlib import Path

import pytest
import soundfile
from django.urls import reverse

from jobs.engine import audio
from jobs.models import Job
from tests.conftest import media_files

pytestmark = pytest.mark.django_db(transaction=True)


def upload(client, path):
    with path.open("rb") as handle:
        response = client.post(reverse("job_create"), {"files": handle})
    assert response.status_code == 302, response.content.decode()[:500]
    return Job.objects.latest("created_at")


@pytest.mark.slow
def test_uploaded_track_is_separated_into_four_playable_stems(
    owner_client, make_audio, run_worker, media_root
):
    source = make_audio("Take Five.mp3", seconds=6)
    job = upload(owner_client, source)

    result = run_worker()

    assert result.returncode == 0, result.stderr
    job.refresh_from_db()
    assert job.status == "succeeded", job.error_message
    assert job.progress == 100
    assert job.started_at <= job.finished_at
    stems = {stem.name: stem for stem in job.stems.all()}
    assert sorted(stems) == ["bass", "drums", "other", "vocals"]
    expected_duration = audio.probe(str(source)).duration
    for name, stem in stems.items():
        assert stem.file.name == f"jobs/{job.pk}/stems/{name}.mp3"
        assert stem.size == stem.file.size > 0
        info = audio.probe(stem.file.path)
        assert (info.codec, info.sample_rate, info.channels) == ("mp3", 44100, 2)
        wav, rate = audio.decode(stem.file.path, max_seconds=60, timeout=30)
        assert wav.shape[1] / rate == pytest.approx(expected_duration, abs=0.06)
    assert len(media_files(media_root)) == 1 + 4


def test_worker_loads_the_model_once_for_several_jobs(owner_client, make_audio, run_worker):
    jobs = [upload(owner_client, make_audio(f"track{i}.wav", seconds=2)) for i in range(3)]

    result = run_worker()

    assert result.returncode == 0, result.stderr
    assert [Job.objects.get(pk=job.pk).status for job in jobs] == ["succeeded"] * 3
    assert result.stderr.count("Loaded model htdemucs") == 1, result.stderr


def test_unavailable_model_fails_the_job_with_what_to_set(
    owner_client, make_audio, run_worker, tmp_path, media_root
):
    job = upload(owner_client, make_audio("song.wav", seconds=2))
    empty_repo = tmp_path / "no-models"
    empty_repo.mkdir()

    result = run_worker({"STEMSITE_MODEL_REPO": str(empty_repo)})

    assert result.returncode == 0, result.stderr
    job.refresh_from_db()
    assert job.status == "failed"
    assert "could not be loaded" in job.error_message
    assert "STEMSITE_MODEL_REPO" in job.error_message
    assert "Traceback" not in job.error_message
    assert not job.stems.exists()
    assert media_files(media_root) == [media_root / job.input_file.name]


def test_undecodable_input_fails_with_a_message_and_no_stems(
    owner_client, make_audio, run_worker, media_root
):
    job = upload(owner_client, make_audio("song.flac", seconds=2))
    (media_root / job.input_file.name).write_bytes(b"this is no longer audio")

    result = run_worker()

    assert result.returncode == 0, result.stderr
    job.refresh_from_db()
    assert job.status == "failed"
    assert "audio" in job.error_message
    assert "Traceback" not in job.error_message
    assert not job.stems.exists()
    assert all("/stems/" not in str(path) for path in media_files(media_root))


def test_mono_8khz_input_gives_stereo_44k_stems(owner_client, make_audio, run_worker):
    job = upload(owner_client, make_audio("phone.wav", seconds=2, rate=8000, channels=1))

    assert run_worker().returncode == 0
    job.refresh_from_db()
    assert job.status == "succeeded", job.error_message
    for stem in job.stems.all():
        info = soundfile.info(stem.file.path)
        assert (info.samplerate, info.channels) == (44100, 2)
        assert info.duration == pytest.approx(2, abs=0.06)


def test_killed_work_horse_leaves_the_job_failed_not_running(
    owner_client, make_audio, start_worker, media_root
):
    job = upload(owner_client, make_audio("long.flac", seconds=120))
    worker = start_worker()
    wait_until(lambda: Job.objects.get(pk=job.pk).status == "running")
    horse = wait_until(lambda: child_pids(worker.pid))
    os.kill(horse[0], signal.SIGKILL)
    wait_until(lambda: Job.objects.get(pk=job.pk).status == "failed")

    job.refresh_from_db()
    assert "worker stopped unexpectedly" in job.error_message
    assert not job.stems.exists()
    assert all("/stems/" not in str(path) for path in media_files(media_root))


def child_pids(pid: int) -> list[int]:
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [int(child) for child in children]


def wait_until(condition, timeout: float = 120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(0.1)
    raise TimeoutError("condition not met in time")


@pytest.mark.slow
def test_worker_keeps_each_model_warm_across_forked_jobs(owner_client, make_audio, run_worker):
    source = make_audio("song.wav", seconds=1)
    for quality in ("fast", "normal", "best"):
        with source.open("rb") as handle:
            owner_client.post(
                reverse("job_create"), {"files": handle, "model": "htdemucs_6s", "quality": quality}
            )

    result = run_worker()

    assert result.returncode == 0, result.stderr
    assert list(Job.objects.values_list("status", flat=True)) == ["succeeded"] * 3
    assert result.stderr.count("Loaded model htdemucs_6s ") == 1, result.stderr
