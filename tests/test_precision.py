"""Precision is one of a job's options, like the model: chosen, deduplicated, kept on retry,
given by the API, filtered in admin, and shown with the engine that ran it."""

import pytest
from django.urls import reverse

from jobs.api.tokens import create_token
from jobs.control import retry_job
from jobs.engine import execution
from jobs.eta import expected_seconds
from jobs.models import Job
from tests.test_api import assert_error, bearer
from tests.test_model_choices import post

pytestmark = pytest.mark.django_db(transaction=True)


def test_the_same_upload_at_another_precision_is_another_job(owner_client, make_audio, reporting_worker):
    reporting_worker(half="bf16")
    source = make_audio("song.wav", seconds=1)

    post(owner_client, source, precision="full")
    post(owner_client, source, precision="half")
    post(owner_client, source, precision="half")

    jobs = Job.objects.order_by("created_at")
    assert [job.options["precision"] for job in jobs] == ["full", "half"]
    assert jobs[0].dedupe_key != jobs[1].dedupe_key


def test_left_out_precision_is_the_sites_default_where_it_is_offered(
    owner_client, make_audio, reporting_worker, settings
):
    settings.STEMSITE_PRECISION = "half"
    post(owner_client, make_audio("a.wav", seconds=1))
    assert Job.objects.get().options["precision"] == "full", "half is not offered without a report"

    reporting_worker(half="bf16")
    page = owner_client.get(reverse("job_list")).content.decode()
    assert "half precision, normal quality" in page
    post(owner_client, make_audio("b.wav", seconds=1))
    assert Job.objects.latest("created_at").options["precision"] == "half"


def test_half_precision_where_no_worker_runs_it_is_refused_with_a_sentence(client, owner, make_audio):
    token = create_token(owner, "script")[1]
    with make_audio("song.wav", seconds=1).open("rb") as handle:
        response = client.post("/api/jobs", {"file": handle, "precision": "half"}, headers=bearer(token))
    error = assert_error(response, 400, "invalid")
    assert "precision: Half precision is not available on this site" in error["message"]
    assert not Job.objects.exists()


def test_the_api_takes_and_returns_the_precision(client, owner, make_audio, reporting_worker):
    reporting_worker(half="bf16")
    token = create_token(owner, "script")[1]
    with make_audio("song.wav", seconds=1).open("rb") as handle:
        response = client.post("/api/jobs", {"file": handle, "precision": "half"}, headers=bearer(token))
    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["precision"], body["engine"], body["arithmetic"]) == ("half", "", "")
    assert body["options"]["precision"] == "half"

    listing = client.get("/api/models", headers=bearer(token)).json()
    assert [p["name"] for p in listing["precisions"]] == ["full", "half"]
    assert listing["half_arithmetic"] == "bf16"


def test_retry_keeps_the_precision(owner, make_job):
    job = make_job(owner, status="failed", options={"precision": "half", "quality": "fast"})
    assert retry_job(job)
    job.refresh_from_db()
    assert (job.status, job.options["precision"]) == ("queued", "half")


def test_the_job_page_says_which_precision_and_engine_made_the_stems(owner, owner_client, make_job):
    half = make_job(owner, options={"precision": "half"}, engine="openvino", arithmetic="bf16")
    page = owner_client.get(half.get_absolute_url()).content.decode()
    assert "htdemucs · half precision (bf16) · OpenVINO" in page

    fallback = make_job(
        owner, name="b.wav", options={"precision": "half"}, engine="pytorch", arithmetic="fp32"
    )
    page = owner_client.get(fallback.get_absolute_url()).content.decode()
    assert (
        "htdemucs · full precision (fp32) · PyTorch · half precision was not available on the worker" in page
    )

    queued = make_job(owner, name="c.wav", status="queued", options={"precision": "full"})
    assert "htdemucs · full precision</p>" in owner_client.get(queued.get_absolute_url()).content.decode()


def test_the_job_list_marks_half_precision_jobs(owner, owner_client, make_job):
    make_job(owner, options={"precision": "half", "quality": "normal"})
    page = owner_client.get(reverse("job_list")).content.decode()
    assert "htdemucs · half precision · normal" in page


def test_admin_filters_by_precision_and_engine(staff_client, owner, make_job):
    make_job(owner, name="fast.wav", options={"precision": "half"}, engine="openvino", arithmetic="bf16")
    make_job(owner, name="exact.wav", options={"precision": "full"}, engine="pytorch", arithmetic="fp32")
    url = reverse("admin:jobs_job_changelist")

    half = staff_client.get(url, {"precision": "half"}).content.decode()
    assert "fast.wav" in half
    assert "exact.wav" not in half
    on_pytorch = staff_client.get(url, {"engine__exact": "pytorch"}).content.decode()
    assert "exact.wav" in on_pytorch
    assert "fast.wav" not in on_pytorch
    assert "By precision" in half
    assert "By arithmetic" in half


def test_estimates_expect_half_precision_to_take_half_as_long(owner):
    full = Job(owner=owner, model_name="htdemucs", options={"precision": "full"}, duration_seconds=100)
    half = Job(owner=owner, model_name="htdemucs", options={"precision": "half"}, duration_seconds=100)
    assert expected_seconds(half, {}) == pytest.approx(expected_seconds(full, {}) / 2)
    measured = {("htdemucs", "half"): 0.2}
    assert expected_seconds(half, measured) == pytest.approx(20)


@pytest.mark.slow
def test_a_worker_runs_half_precision_as_its_hardware_allows(owner, make_job, run_worker):
    job = make_job(owner, status="queued", options={"precision": "half", "quality": "fast"})
    from jobs.background.tasks import enqueue_separation

    enqueue_separation(job)
    result = run_worker()

    assert result.returncode == 0, result.stderr
    job.refresh_from_db()
    assert job.status == "succeeded", job.error_message
    native = execution.half_arithmetic("cpu")
    assert (job.engine, job.arithmetic) == ("pytorch", native or "fp32")
    if not native:
        assert "running in full precision" in result.stderr
