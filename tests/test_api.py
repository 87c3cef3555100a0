"""The JSON API: every endpoint, its auth, its errors, and a real upload separated by a worker."""

import django_rq
import pytest
from django.conf import settings
from django.test import Client, override_settings

from jobs.api.tokens import create_token
from jobs.models import ApiToken, Job, MixExport
from tests.conftest import free_port, media_files, queues_at

pytestmark = pytest.mark.django_db


def bearer(raw: str) -> dict:
    return {"Authorization": f"Bearer {raw}"}


@pytest.fixture
def staff_token(staff) -> str:
    return create_token(staff, "staff script")[1]


def api(client, method: str, url: str, token: str | None = None, **kwargs):
    headers = {**kwargs.pop("headers", {}), **(bearer(token) if token else {})}
    return getattr(client, method)(url, headers=headers, **kwargs)


def assert_error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.content[:500]
    assert response["Content-Type"] == "application/json"
    error = response.json()["error"]
    assert error["code"] == code
    assert error["message"].endswith("."), "the message is a sentence"
    return error


def upload(client, token, path, **fields):
    with path.open("rb") as handle:
        return api(client, "post", "/api/jobs", token, data={"file": handle, **fields})


# Auth


def test_no_token_is_401_with_a_sentence(client, owner, make_job):
    job = make_job(owner)
    for method, url in [("get", "/api/jobs"), ("get", f"/api/jobs/{job.pk}"), ("post", "/api/jobs")]:
        error = assert_error(api(client, method, url), 401, "unauthorized")
        assert "Bearer" in error["message"]


def test_unknown_and_revoked_tokens_are_401(client, owner, owner_token, make_job):
    job = make_job(owner)
    assert api(client, "get", f"/api/jobs/{job.pk}", owner_token).status_code == 200
    assert_error(api(client, "get", f"/api/jobs/{job.pk}", "stm_not-a-token"), 401, "unauthorized")
    ApiToken.objects.update(revoked_at=job.created_at)
    assert_error(api(client, "get", f"/api/jobs/{job.pk}", owner_token), 401, "unauthorized")


def test_token_of_an_inactive_user_is_401(client, owner, owner_token):
    owner.is_active = False
    owner.save()
    assert_error(api(client, "get", "/api/jobs", owner_token), 401, "unauthorized")


def test_token_use_is_noted_at_most_once_a_minute(client, owner, owner_token):
    token = ApiToken.objects.get()
    assert token.last_used_at is None
    api(client, "get", "/api/jobs", owner_token)
    token.refresh_from_db()
    first = token.last_used_at
    assert first is not None
    api(client, "get", "/api/jobs", owner_token)
    token.refresh_from_db()
    assert token.last_used_at == first, "a second call within the minute writes nothing"


def test_session_calls_need_csrf_on_post_but_token_calls_do_not(owner, owner_token, make_job):
    job = make_job(owner, status="failed")
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(owner)
    assert browser.get(f"/api/jobs/{job.pk}").status_code == 200, "a session may read without CSRF"
    assert_error(browser.post(f"/api/jobs/{job.pk}/retry"), 403, "csrf_failed")
    job.refresh_from_db()
    assert job.status == "failed", "the refused call changed nothing"

    browser.get("/accounts/")  # sets the CSRF cookie, as any page does
    csrf = browser.cookies[settings.CSRF_COOKIE_NAME].value
    assert browser.post(f"/api/jobs/{job.pk}/cancel", headers={"X-CSRFToken": csrf}).status_code == 409

    script = Client(enforce_csrf_checks=True)
    assert api(script, "post", f"/api/jobs/{job.pk}/cancel", owner_token).status_code == 409


# Other users' jobs do not exist; staff see all


def test_other_users_job_is_404_on_every_job_endpoint(client, owner, outsider_token, make_job, make_export):
    job = make_job(owner, name="Secret Song.wav")
    export = make_export(job)
    stem = job.stems.first()
    calls = [
        ("get", f"/api/jobs/{job.pk}"),
        ("post", f"/api/jobs/{job.pk}/cancel"),
        ("post", f"/api/jobs/{job.pk}/retry"),
        ("delete", f"/api/jobs/{job.pk}"),
        ("get", f"/api/jobs/{job.pk}/stems"),
        ("get", f"/api/jobs/{job.pk}/stems/{stem.name}"),
        ("get", f"/api/jobs/{job.pk}/exports/{export.pk}"),
        ("get", f"/api/jobs/{job.pk}/exports/{export.pk}/file"),
    ]
    for method, url in calls:
        response = api(client, method, url, outsider_token)
        assert_error(response, 404, "not_found")
        assert b"Secret Song" not in response.content
    response = api(
        client,
        "post",
        f"/api/jobs/{job.pk}/exports",
        outsider_token,
        data={},
        content_type="application/json",
    )
    assert_error(response, 404, "not_found")
    assert Job.objects.filter(pk=job.pk).exists()
    assert api(client, "get", "/api/jobs", outsider_token).json()["count"] == 0


def test_staff_see_any_job(client, owner, staff_token, make_job):
    job = make_job(owner)
    assert api(client, "get", f"/api/jobs/{job.pk}", staff_token).json()["id"] == str(job.pk)
    assert len(api(client, "get", f"/api/jobs/{job.pk}/stems", staff_token).json()) == 4


def test_unknown_api_path_is_a_json_404(client, owner_token):
    assert_error(api(client, "get", "/api/nothing/here", owner_token), 404, "not_found")


# Reading jobs


@pytest.mark.parametrize(
    ("status", "state"),
    [("queued", "pending"), ("running", "processing"), ("succeeded", "completed"), ("failed", "failed"),
     ("canceled", "canceled")],
)  # fmt: skip
def test_job_status_gives_the_original_lifecycle_state(client, owner, owner_token, make_job, status, state):
    job = make_job(owner, status=status)
    data = api(client, "get", f"/api/jobs/{job.pk}", owner_token).json()
    assert (data["id"], data["status"], data["state"]) == (str(job.pk), status, state)
    assert data["url"] == f"http://testserver{job.get_absolute_url()}"


def test_job_list_is_paginated_newest_first_and_filters_by_status(
    client, owner, outsider, owner_token, make_job
):
    jobs = [
        make_job(owner, status=s, name=f"{n}.wav") for n, s in enumerate(["succeeded", "failed", "succeeded"])
    ]
    make_job(outsider)
    first = api(client, "get", "/api/jobs?page_size=2", owner_token).json()
    assert (first["count"], first["pages"], first["page"]) == (3, 2, 1)
    assert [item["id"] for item in first["items"]] == [str(jobs[2].pk), str(jobs[1].pk)]
    second = api(client, "get", "/api/jobs?page_size=2&page=2", owner_token).json()
    assert [item["id"] for item in second["items"]] == [str(jobs[0].pk)]
    failed = api(client, "get", "/api/jobs?status=failed", owner_token).json()
    assert [item["id"] for item in failed["items"]] == [str(jobs[1].pk)]


def test_bad_query_values_are_400_with_the_field_named(client, owner, owner_token):
    error = assert_error(api(client, "get", "/api/jobs?status=lost", owner_token), 400, "invalid")
    assert "status" in error["message"]
    assert error["details"][0]["field"].endswith("status")
    assert_error(api(client, "get", "/api/jobs?page=0", owner_token), 400, "invalid")
    assert_error(api(client, "get", "/api/jobs?page_size=1000", owner_token), 400, "invalid")
    assert_error(api(client, "get", "/api/jobs/not-a-uuid", owner_token), 404, "not_found")


def test_stems_list_names_sizes_and_absolute_urls_that_download_with_the_token(
    client, owner, owner_token, make_job
):
    job = make_job(owner, name="Song.wav")
    stems = api(client, "get", f"/api/jobs/{job.pk}/stems", owner_token).json()
    assert [s["name"] for s in stems] == ["drums", "bass", "other", "vocals"]
    stem = job.stems.get(name="vocals")
    [vocals] = [s for s in stems if s["name"] == "vocals"]
    assert vocals["size"] == stem.size > 0
    assert vocals["url"].startswith("http://testserver/api/jobs/")
    response = api(client, "get", vocals["url"], owner_token)
    assert response.status_code == 200
    assert b"".join(response.streaming_content) == stem.file.open("rb").read()
    assert response["Content-Disposition"] == 'attachment; filename="Song - vocals.mp3"'
    assert_error(api(client, "get", vocals["url"]), 401, "unauthorized")
    assert_error(api(client, "get", f"/api/jobs/{job.pk}/stems/guitar", owner_token), 404, "not_found")


# Changing jobs


def test_cancel_a_queued_job_and_409_once_finished(client, owner, owner_token, make_job):
    job = make_job(owner, status="queued")
    data = api(client, "post", f"/api/jobs/{job.pk}/cancel", owner_token).json()
    assert (data["status"], data["state"]) == ("canceled", "canceled")
    assert_error(api(client, "post", f"/api/jobs/{job.pk}/cancel", owner_token), 409, "conflict")


def test_retry_queues_a_failed_job_again_and_409_for_a_finished_one(client, owner, owner_token, make_job):
    job = make_job(owner, status="failed")
    data = api(client, "post", f"/api/jobs/{job.pk}/retry", owner_token).json()
    assert (data["status"], data["attempt"]) == ("queued", 2)
    assert [rq.args for rq in django_rq.get_queue(settings.STEMSITE_QUEUE).get_jobs()] == [(str(job.pk), 2)]
    done = make_job(owner, status="succeeded", name="Other.wav")
    assert_error(api(client, "post", f"/api/jobs/{done.pk}/retry", owner_token), 409, "conflict")


def test_retry_of_work_already_active_is_409_naming_that_job(client, owner, owner_token, make_job):
    active = make_job(owner, status="queued", dedupe_key="same")
    failed = make_job(owner, status="failed", dedupe_key="same", name="Again.wav")
    error = assert_error(
        api(client, "post", f"/api/jobs/{failed.pk}/retry", owner_token), 409, "identical_job_active"
    )
    assert error["details"]["job"]["id"] == str(active.pk)


def test_delete_removes_the_job_and_every_file(client, owner, owner_token, make_job, make_export, media_root):
    job = make_job(owner)
    make_export(job)
    assert media_files(media_root)
    response = api(client, "delete", f"/api/jobs/{job.pk}", owner_token)
    assert response.status_code == 204
    assert not Job.objects.filter(pk=job.pk).exists()
    assert media_files(media_root) == []
    assert_error(api(client, "delete", f"/api/jobs/{job.pk}", owner_token), 404, "not_found")


@pytest.mark.parametrize("status", ["queued", "running"])
def test_delete_of_an_unfinished_job_is_409_and_keeps_it(client, owner, owner_token, make_job, status):
    job = make_job(owner, status=status)
    assert_error(api(client, "delete", f"/api/jobs/{job.pk}", owner_token), 409, "conflict")
    assert Job.objects.filter(pk=job.pk).exists()


# Mix exports


def post_export(client, token, job, body):
    return api(
        client, "post", f"/api/jobs/{job.pk}/exports", token, data=body, content_type="application/json"
    )


def test_export_is_queued_with_effective_gains_and_the_same_settings_give_the_same_export(
    client, owner, owner_token, make_job
):
    job = make_job(owner)
    body = {"format": "wav", "gains": {"vocals": 0.5, "drums": 1.5}, "mute": ["bass"], "solo": []}
    response = post_export(client, owner_token, job, body)
    assert response.status_code == 202, response.content
    data = response.json()
    assert data["gains"] == {"drums": 1.5, "bass": 0.0, "other": 1.0, "vocals": 0.5}
    assert (data["status"], data["format"], data["url"]) == ("queued", "wav", None)
    assert post_export(client, owner_token, job, body).json()["id"] == data["id"]
    assert MixExport.objects.count() == 1
    fetched = api(client, "get", f"/api/jobs/{job.pk}/exports/{data['id']}", owner_token).json()
    assert fetched["id"] == data["id"]


def test_finished_export_has_a_download_url(client, owner, owner_token, make_job, make_export):
    job = make_job(owner)
    export = make_export(job)
    data = api(client, "get", f"/api/jobs/{job.pk}/exports/{export.pk}", owner_token).json()
    assert data["url"] == f"http://testserver/api/jobs/{job.pk}/exports/{export.pk}/file"
    response = api(client, "get", data["url"], owner_token)
    assert response.status_code == 200
    assert b"".join(response.streaming_content) == export.file.open("rb").read()


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"format": "ogg"}, "format"),
        ({"gains": {"vocals": 3}}, "level of vocals must be a number from 0 to 2"),
        ({"gains": {"guitar": 1}}, "no stem named guitar"),
        ({"mute": ["kazoo"]}, "no stem named kazoo"),
        ({"gains": "loud"}, "gains"),
    ],
)
def test_bad_export_settings_are_400_with_a_sentence(client, owner, owner_token, make_job, body, words):
    job = make_job(owner)
    error = assert_error(post_export(client, owner_token, job, body), 400, "invalid")
    assert words in error["message"]
    assert not MixExport.objects.exists()


def test_export_of_an_unfinished_job_is_409(client, owner, owner_token, make_job):
    job = make_job(owner, status="running")
    assert_error(post_export(client, owner_token, job, {}), 409, "conflict")


def test_malformed_json_body_is_400(client, owner, owner_token, make_job):
    job = make_job(owner)
    response = api(
        client,
        "post",
        f"/api/jobs/{job.pk}/exports",
        owner_token,
        data="{oops",
        content_type="application/json",
    )
    assert_error(response, 400, "invalid")


# Creating jobs


def test_upload_is_validated_like_the_form(client, owner_token, make_audio, tmp_path, media_root):
    text = tmp_path / "notes.mp3"
    text.write_bytes(b"just some text, not audio at all" * 10)
    error = assert_error(upload(client, owner_token, text), 400, "invalid")
    assert "audio" in error["message"].lower()
    error = assert_error(api(client, "post", "/api/jobs", owner_token, data={}), 400, "invalid")
    assert error["message"] == "Choose an audio file to upload, or paste a link to one."
    error = assert_error(upload(client, owner_token, make_audio("a.wav", 1), model="nope"), 400, "invalid")
    assert error["message"].startswith("model: ")
    assert "nope" in error["message"]
    with make_audio("b.wav", 1).open("rb") as one, make_audio("c.wav", 1).open("rb") as two:
        response = api(client, "post", "/api/jobs", owner_token, data={"file": [one, two]})
    assert (
        assert_error(response, 400, "invalid")["message"] == "Send one file per request, in the field 'file'."
    )
    assert not Job.objects.exists()
    assert media_files(media_root) == []


def test_callback_url_is_checked_and_stored(client, owner_token, make_audio):
    error = assert_error(
        upload(client, owner_token, make_audio("a.wav", 1), callback_url="ftp://example.com/x"),
        400,
        "invalid",
    )
    assert "callback_url" in error["details"]
    assert not Job.objects.exists()
    response = upload(client, owner_token, make_audio("b.wav", 1), callback_url="https://93.184.215.14/hook")
    assert response.status_code == 201
    assert Job.objects.get().callback_url == "https://93.184.215.14/hook"


@override_settings(STEMSITE_UPLOADS_PER_HOUR=1)
def test_per_user_upload_limit_is_429_with_the_sentence(client, owner_token, make_audio):
    assert upload(client, owner_token, make_audio("a.wav", 1)).status_code == 201
    error = assert_error(upload(client, owner_token, make_audio("b.wav", 2)), 429, "rate_limited")
    assert "You can upload 1 track per hour" in error["message"]
    assert Job.objects.count() == 1


@override_settings(STEMSITE_MAX_UPLOAD_MB=1)
def test_oversize_upload_is_413_json(client, owner_token, tmp_path):
    big = tmp_path / "big.wav"
    big.write_bytes(b"\0" * (3 * 1024 * 1024))
    error = assert_error(upload(client, owner_token, big), 413, "too_large")
    assert "the limit is 1 MB" in error["message"]
    assert not Job.objects.exists()


def test_same_upload_twice_gives_the_existing_job_with_200(client, owner_token, make_audio):
    path = make_audio("a.wav", 1)
    first = upload(client, owner_token, path)
    second = upload(client, owner_token, path)
    assert (first.status_code, second.status_code) == (201, 200)
    assert first.json()["id"] == second.json()["id"]


@pytest.mark.django_db(transaction=True)  # the queueing runs on commit, as in a real request
def test_upload_while_redis_is_down_is_503_and_the_job_is_kept_queued(client, owner_token, make_audio):
    down = f"redis://127.0.0.1:{free_port()}/0"
    with override_settings(RQ_QUEUES=queues_at(down)):
        response = upload(client, owner_token, make_audio("a.wav", 1))
    error = assert_error(response, 503, "queue_unavailable")
    assert "will start automatically" in error["message"]
    job = Job.objects.get()
    assert (error["details"]["job"]["id"], job.status) == (str(job.pk), "queued")
    assert response["Retry-After"]


@pytest.mark.django_db(transaction=True)
def test_upload_through_the_api_is_separated_and_its_stems_download(
    client, owner_token, make_audio, run_worker
):
    track = make_audio("Tune.wav", 2)
    response = upload(client, owner_token, track, output_format="wav16", two_stems="vocals")
    assert response.status_code == 201, response.content
    created = response.json()
    assert (created["status"], created["state"], created["options"]["two_stems"]) == (
        "queued",
        "pending",
        "vocals",
    )

    worker = run_worker()
    assert worker.returncode == 0, worker.stderr[-2000:]

    done = api(client, "get", f"/api/jobs/{created['id']}", owner_token).json()
    assert (done["status"], done["state"], done["progress"]) == ("succeeded", "completed", 100)
    stems = api(client, "get", done["stems_url"], owner_token).json()
    assert sorted(s["name"] for s in stems) == ["no_vocals", "vocals"]
    for stem in stems:
        download = api(client, "get", stem["url"], owner_token)
        assert download.status_code == 200
        data = b"".join(download.streaming_content)
        assert len(data) == stem["size"] > 44
        assert data[:4] == b"RIFF"
