"""A job that outlives its time limit: failed with a message that says so, and no stems kept."""

import pytest

from jobs.background.tasks import job_timeout
from jobs.models import Job
from jobs.options import JobOptions
from tests.conftest import media_files
from tests.test_worker import upload

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.database_agnostic]


def test_time_limit_grows_with_the_track_and_the_model_cost(settings):
    settings.STEMSITE_TIMEOUT_BASE_SECONDS = 600
    settings.STEMSITE_TIMEOUT_PER_AUDIO_SECOND = 6.0
    default = JobOptions.from_dict({"model": "htdemucs"})
    bag = JobOptions.from_dict({"model": "htdemucs_ft", "quality": "best"})

    assert job_timeout(600, default) > 180, "RQ's 180 s default would stop a 10 minute track"
    assert job_timeout(600, default) > job_timeout(60, default)
    assert job_timeout(600, bag) > job_timeout(600, default)


def test_timed_out_job_fails_saying_so_and_keeps_no_stems(
    owner_client, make_audio, run_worker, settings, media_root
):
    settings.STEMSITE_TIMEOUT_BASE_SECONDS = 1
    settings.STEMSITE_TIMEOUT_PER_AUDIO_SECOND = 0.0
    job = upload(owner_client, make_audio("long.flac", seconds=90))

    result = run_worker()

    assert result.returncode == 0, result.stderr
    job.refresh_from_db()
    assert job.status == "failed"
    assert job.error_message == (
        "Separation took longer than the allowed 1 second for this track and was stopped."
    )
    assert not job.stems.exists()
    assert media_files(media_root) == [media_root / job.input_file.name]
    assert Job.objects.count() == 1
