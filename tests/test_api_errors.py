"""Nothing under /api/ answers with an HTML page: oversize bodies, unknown paths, server errors."""

import asyncio
import http.client
import json
from urllib.parse import urlsplit

import pytest

from jobs.upload_limits import RequestBodyLimit
from tests.test_upload_limits import spool_dir  # noqa: F401 (a fixture: 1 MB limits on the live site)

MB = 1024 * 1024


def refuse_declared(path: str, accept: bytes = b"*/*") -> tuple[int, dict, bytes]:
    sent = []
    scope = {
        "type": "http", "method": "POST", "path": path,
        "headers": [(b"content-length", str(10 * MB).encode()), (b"accept", accept)],
    }  # fmt: skip

    async def app(scope, receive, send):
        raise AssertionError("the application must not run")

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        sent.append(message)

    asyncio.run(RequestBodyLimit(app, max_bytes=MB)(scope, receive, send))
    headers = dict(sent[0]["headers"])
    return sent[0]["status"], headers, sent[1]["body"]


def test_oversize_body_to_the_api_gets_a_json_413():
    status, headers, body = refuse_declared("/api/jobs")
    assert status == 413
    assert headers[b"content-type"] == b"application/json"
    error = json.loads(body)["error"]
    assert error["code"] == "too_large"
    assert "the limit is" in error["message"]


def test_oversize_body_asking_for_json_gets_json_and_the_page_still_gets_html():
    assert (
        refuse_declared("/jobs/new/", accept=b"application/json")[1][b"content-type"] == b"application/json"
    )
    status, headers, body = refuse_declared("/jobs/new/", accept=b"text/html,*/*")
    assert headers[b"content-type"].startswith(b"text/html")
    assert b"<html" in body


@pytest.mark.django_db(transaction=True)
def test_daphne_refuses_an_oversize_api_upload_with_json(spool_dir, live_web):  # noqa: F811
    url = urlsplit(live_web)
    connection = http.client.HTTPConnection(url.hostname, url.port, timeout=60)
    connection.putrequest("POST", "/api/jobs")
    connection.putheader("Authorization", "Bearer stm_whatever")
    connection.putheader("Content-Type", "multipart/form-data; boundary=x")
    connection.putheader("Content-Length", str(500 * MB))
    connection.endheaders()
    response = connection.getresponse()
    body = response.read()
    connection.close()
    assert response.status == 413
    assert response.getheader("Content-Type") == "application/json"
    assert json.loads(body)["error"]["code"] == "too_large"
    assert sorted(spool_dir.iterdir()) == []


@pytest.mark.django_db
def test_server_error_is_json_with_a_sentence(client, owner, make_job, monkeypatch):
    from jobs.api import jobs as endpoints
    from jobs.api.tokens import create_token

    job = make_job(owner)

    def broken(request, job):
        raise RuntimeError("a bug")

    monkeypatch.setattr(endpoints, "job_out", broken)
    raw = create_token(owner, "x")[1]
    response = client.get(f"/api/jobs/{job.pk}", headers={"Authorization": f"Bearer {raw}"})
    assert response.status_code == 500
    assert response["Content-Type"] == "application/json"
    assert response.json()["error"]["code"] == "server_error"
    assert "a bug" not in response.content.decode(), "no traceback or internals"


@pytest.mark.django_db
def test_api_root_and_unknown_paths_are_json_404s(client, owner, make_job):
    from jobs.api.tokens import create_token

    raw = create_token(owner, "x")[1]
    headers = {"Authorization": f"Bearer {raw}"}
    for response in (client.get("/api/", headers=headers), client.get("/api/jobs/x/y/z", headers=headers)):
        assert response.status_code == 404
        assert response["Content-Type"] == "application/json"


@pytest.mark.django_db
def test_wrong_method_is_a_json_405_naming_the_allowed_ones(client, owner, make_job):
    from jobs.api.tokens import create_token

    raw = create_token(owner, "x")[1]
    job = make_job(owner)
    response = client.put(f"/api/jobs/{job.pk}", headers={"Authorization": f"Bearer {raw}"})
    assert response.status_code == 405
    assert response["Content-Type"] == "application/json"
    assert response["Allow"] == "DELETE, GET"
    assert response.json()["error"]["message"] == "This endpoint does not take PUT; it takes DELETE, GET."


@pytest.mark.django_db
def test_django_level_refusals_under_the_api_are_json(client, settings):
    settings.ALLOWED_HOSTS = ["testserver"]
    response = client.get("/api/jobs", HTTP_HOST="evil.example")
    assert response.status_code == 400
    assert response["Content-Type"] == "application/json"
    assert response.json()["error"]["code"] == "invalid"
