"""Upload size and file-count limits: refused with a sentence while the request arrives, and
no temporary file is left behind, on a real daphne."""

import asyncio
import http.client
import os
import secrets
import select
from urllib.parse import urlsplit

import pytest
from django.conf import settings
from playwright.sync_api import expect, sync_playwright

from jobs.models import Job
from jobs.upload_limits import RequestBodyLimit
from tests.conftest import media_files
from tests.test_browser import CHROMIUM, CHROMIUM_FLAGS, log_in

pytestmark = pytest.mark.database_agnostic

MB = 1024 * 1024


@pytest.fixture
def spool_dir(process_env, tmp_path):
    """Where the live site's upload handler and temporary files go; limits made small: 1 MB, 2 files."""
    folder = tmp_path / "spool"
    folder.mkdir()
    process_env.update(
        FILE_UPLOAD_TEMP_DIR=str(folder),
        TMPDIR=str(folder),
        STEMSITE_MAX_UPLOAD_MB="1",
        STEMSITE_MAX_FILES_PER_UPLOAD="2",
    )
    return folder


def multipart(files: dict[str, bytes]) -> tuple[bytes, str]:
    boundary = secrets.token_hex(16)
    parts = []
    for name, data in files.items():
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="{name}"\r\n'
            f"Content-Type: audio/mpeg\r\n\r\n".encode()
            + data
            + b"\r\n"
        )
    body = b"".join(parts) + f"--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def send(site: str, session: str, chunks, content_type: str, length: int | None = None):
    """POST `chunks` like a client that listens while it sends: it stops once the server answers.

    Returns the status, the page and how many body bytes went out. Without `length`, the body
    goes chunked.
    """
    url = urlsplit(site)
    connection = http.client.HTTPConnection(url.hostname, url.port, timeout=60)
    token = secrets.token_hex(16)
    connection.putrequest("POST", "/jobs/new/")
    connection.putheader("Content-Type", content_type)
    connection.putheader("Cookie", f"sessionid={session}; csrftoken={token}")
    connection.putheader("X-CSRFToken", token)
    if length is None:
        connection.putheader("Transfer-Encoding", "chunked")
    else:
        connection.putheader("Content-Length", str(length))
    connection.endheaders()
    sent = 0
    for chunk in chunks:
        if select.select([connection.sock], [], [], 0)[0]:
            break  # the server has answered (and may close): stop sending
        framed = chunk if length is not None else f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"
        try:
            connection.sock.sendall(framed)
        except (BrokenPipeError, ConnectionResetError):
            break
        sent += len(chunk)
    else:
        if length is None:
            connection.sock.sendall(b"0\r\n\r\n")
    response = connection.getresponse()
    page = response.read().decode()
    connection.close()
    return response.status, page, sent


def endless(block_bytes: int = 256 * 1024, total: int = 500 * MB):
    block = os.urandom(block_bytes)
    for _ in range(total // block_bytes):
        yield block


def pieces(body: bytes, size: int = 256 * 1024) -> list[bytes]:
    return [body[i : i + size] for i in range(0, len(body), size)]


TOO_LARGE = "the limit is 1 MB for all files sent together"


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_oversize_body_is_refused_while_it_streams(spool_dir, live_web, owner_client, media_root, chunked):
    session = owner_client.cookies[settings.SESSION_COOKIE_NAME].value
    _, content_type = multipart({})

    status, page, sent = send(
        live_web, session, endless(), content_type, length=None if chunked else 500 * MB
    )

    assert status == 413, page[:500]
    assert TOO_LARGE in page
    assert sent < 50 * MB, "the server must answer long before the 500 MB are sent"
    assert sorted(spool_dir.iterdir()) == []
    assert not Job.objects.exists()
    assert media_files(media_root) == []


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("files", "sentence"),
    [
        ({"part.mp3": os.urandom(MB + MB // 2)}, TOO_LARGE),
        ({f"{n}.mp3": os.urandom(1000) for n in range(3)}, "send at most 2 at once"),
    ],
    ids=["file-part-over", "too-many-files"],
)
def test_upload_over_a_limit_gets_a_400_page_with_a_sentence_and_leaves_no_file(
    spool_dir, live_web, owner_client, media_root, files, sentence
):
    session = owner_client.cookies[settings.SESSION_COOKIE_NAME].value
    body, content_type = multipart(files)
    assert sorted(spool_dir.iterdir()) == []

    status, page, sent = send(live_web, session, pieces(body), content_type, length=len(body))

    assert (status, sent) == (400, len(body)), page[:500]
    assert sentence in page
    assert 'role="alert"' in page
    assert sorted(spool_dir.iterdir()) == []
    assert not Job.objects.exists()
    assert media_files(media_root) == []


class FakeServer:
    """The server side of ASGI: hands the body over in chunks and records what comes back."""

    def __init__(self, chunks: int, chunk_bytes: int, content_length: bool):
        self.remaining, self.chunk_bytes, self.pulled, self.sent = chunks, chunk_bytes, 0, []
        length = [(b"content-length", str(chunks * chunk_bytes).encode())] if content_length else []
        self.scope = {"type": "http", "method": "POST", "path": "/jobs/new/", "headers": length}

    async def receive(self):
        self.pulled += 1
        self.remaining -= 1
        return {"type": "http.request", "body": b"x" * self.chunk_bytes, "more_body": self.remaining > 0}

    async def send(self, message):
        self.sent.append(message)


def test_streamed_body_is_cut_off_at_the_chunk_that_crosses_the_limit():
    server = FakeServer(chunks=100, chunk_bytes=MB // 2, content_length=False)
    app_calls = []

    async def app(scope, receive, send):
        app_calls.append(scope)
        while (await receive())["type"] == "http.request":
            pass

    asyncio.run(RequestBodyLimit(app, max_bytes=2 * MB)(server.scope, server.receive, server.send))

    assert server.pulled == 5, "nothing past the first chunk over 2 MB may be read"
    assert server.sent[0]["status"] == 413
    assert b"too large" in server.sent[1]["body"]


def test_declared_oversize_body_is_refused_before_any_byte_is_read():
    server = FakeServer(chunks=100, chunk_bytes=MB, content_length=True)

    async def app(scope, receive, send):
        raise AssertionError("the application must not run")

    asyncio.run(RequestBodyLimit(app, max_bytes=2 * MB)(server.scope, server.receive, server.send))

    assert server.pulled == 0
    assert [m.get("status") for m in server.sent[:1]] == [413]


@pytest.fixture
def browser_page():
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        yield browser.new_page()
        browser.close()


def posts_to_upload(page) -> list:
    requests = []
    page.on("request", lambda request: request.method == "POST" and requests.append(request.url))
    return requests


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_page_refuses_an_oversize_upload_before_sending_it(
    spool_dir, live_web, owner, browser_page, make_audio
):
    page = browser_page
    log_in(page, live_web)
    sent = posts_to_upload(page)

    page.set_input_files("input[type=file]", str(make_audio("long.wav", seconds=20)))
    page.click("text=Upload and separate")

    expect(page.locator("#upload-form [data-upload-error]")).to_contain_text(TOO_LARGE)
    assert sent == []
    page.goto(live_web)
    expect(page.locator(".empty")).to_have_text("No tracks yet. Upload one above.")


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_servers_413_sentence_is_shown_in_the_upload_form(
    spool_dir, live_web, owner, browser_page, make_audio
):
    page = browser_page
    log_in(page, live_web)
    page.evaluate("document.querySelector('#upload-form').removeAttribute('data-max-bytes')")
    sent = posts_to_upload(page)

    page.set_input_files("input[type=file]", str(make_audio("long.wav", seconds=20)))
    page.click("text=Upload and separate")

    expect(page.locator("#upload-form [data-upload-error]")).to_contain_text(TOO_LARGE)
    assert len(sent) == 1
    assert sorted(spool_dir.iterdir()) == []
    page.goto(live_web)
    expect(page.locator(".empty")).to_have_text("No tracks yet. Upload one above.")
