"""A worker on the OpenVINO engine: converts its model once, the next start reuses the cache, and
a job whose engine cannot start still separates, in PyTorch."""

import pytest
from django.urls import reverse

from jobs.background.tasks import enqueue_separation
from jobs.models import Job

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def queue_job(owner, make_job, name: str) -> Job:
    job = make_job(owner, status="queued", name=name, options={"quality": "fast", "precision": "full"})
    enqueue_separation(job)
    return job


def test_a_second_worker_start_reuses_the_converted_model(
    owner, owner_client, make_job, run_worker, tmp_path
):
    cache = tmp_path / "engine"
    engine = {"STEMSITE_ENGINE": "openvino", "STEMSITE_ENGINE_CACHE_DIR": str(cache)}
    first = queue_job(owner, make_job, "first.wav")

    started = run_worker(extra_env=engine)

    assert started.returncode == 0, started.stderr
    assert "Converting HTDemucs to OpenVINO" in started.stderr
    assert "full precision on openvino (fp32)" in started.stderr
    first.refresh_from_db()
    assert (first.status, first.engine, first.arithmetic) == ("succeeded", "openvino", "fp32")
    assert len(list(cache.glob("htdemucs-*/network.xml"))) == 1
    blobs = [path for path in (cache / "openvino-cache").iterdir() if path.stat().st_size > 0]
    assert blobs, "the compiled network is in OpenVINO's cache"

    second = queue_job(owner, make_job, "second.wav")
    again = run_worker(extra_env=engine)

    assert again.returncode == 0, again.stderr
    assert "Converting" not in again.stderr
    second.refresh_from_db()
    assert (second.status, second.engine) == ("succeeded", "openvino")
    page = owner_client.get(reverse("job_detail", args=[second.pk])).content.decode()
    assert "htdemucs · full precision (fp32) · OpenVINO" in page


def test_a_job_whose_engine_cannot_start_separates_in_pytorch(owner, make_job, run_worker, tmp_path):
    blocked = tmp_path / "a-file"
    blocked.write_text("the cache folder cannot be made under a file")
    job = queue_job(owner, make_job, "song.wav")

    result = run_worker(extra_env={"STEMSITE_ENGINE": "openvino", "STEMSITE_ENGINE_CACHE_DIR": str(blocked)})

    assert result.returncode == 0, result.stderr
    assert "using PyTorch" in result.stderr
    job.refresh_from_db()
    assert (job.status, job.engine, job.arithmetic) == ("succeeded", "pytorch", "fp32")
    assert job.stems.count() == 4
