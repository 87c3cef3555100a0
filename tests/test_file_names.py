"""Hostile file names: stored under server-made keys, shown only as an escaped label everywhere."""

import re
import secrets

import pytest
from asgiref.sync import async_to_sync
from channels.testing import WebsocketCommunicator
from django.core.files import File
from django.urls import reverse

from jobs.models import Job, Stem, upload_label
from jobs.realtime.fragments import job_row_html, job_status_html
from stemsite.asgi import application
from tests.conftest import media_files

pytestmark = pytest.mark.django_db(transaction=True)

XSS = "<img src=x onerror=alert(1)>"
HOSTILE_NAMES = {
    "traversal": "../../../etc/passwd.mp3",
    "windows-path": "C:\\Users\\me\\..\\song.mp3",
    "nul": "before\x00after.mp3",
    "controls": "bell\x07escape\x1b[31m\u202egpj.mp3",
    "unicode": "Björk – Jóga 日本語 🎵.mp3",
    "html": f"{XSS}.mp3",
    "quotes": "\"quoted\" & 'single'.mp3",
    "very-long": "x" * 300 + ".mp3",
}
KEY = re.compile(r"^jobs/[0-9a-f-]{36}/input/[a-z0-9_-]{1,60}\.mp3$")


def post_raw_name(client, filename: str, data: bytes):
    """A multipart upload whose filename is sent byte for byte, as a hostile client would."""
    boundary = secrets.token_hex(16)
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="'.encode()
        + filename.encode()
        + b'"\r\nContent-Type: audio/mpeg\r\n\r\n'
        + data
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return client.post(
        reverse("job_create"), data=body, content_type=f"multipart/form-data; boundary={boundary}"
    )


def first_list_socket_message(client) -> str:
    """What the job list's websocket sends on connect: the rows, labels included."""

    async def receive():
        cookie = f"sessionid={client.cookies['sessionid'].value}".encode()
        socket = WebsocketCommunicator(
            application, "/ws/jobs/", headers=[(b"origin", b"http://localhost"), (b"cookie", cookie)]
        )
        connected, _ = await socket.connect()
        assert connected
        message = await socket.receive_from(timeout=10)
        await socket.disconnect()
        return message

    return async_to_sync(receive)()


def test_hostile_names_are_keys_on_disk_and_escaped_labels_everywhere(
    owner_client, staff_client, make_audio, media_root
):
    for number, (case, name) in enumerate(HOSTILE_NAMES.items()):
        audio = make_audio(f"song{number}.mp3", seconds=1 + number / 10).read_bytes()  # no reuse
        response = post_raw_name(owner_client, name, audio)
        assert response.status_code == 302, (case, response.content.decode()[:300])

    jobs = list(Job.objects.all())
    assert len(jobs) == len(HOSTILE_NAMES)
    assert sorted(media_files(media_root)) == sorted(media_root / job.input_file.name for job in jobs)
    for job in jobs:
        assert KEY.match(job.input_file.name), job.input_file.name
        label = job.original_name
        assert len(label) <= 255
        assert label.endswith(".mp3")
        assert "/" not in label
        assert "\\" not in label
        assert not any(ord(char) < 32 or char in "\x7f\u202e" for char in label), repr(label)

    labels = {job.original_name for job in jobs}
    assert "Björk – Jóga 日本語 🎵.mp3" in labels
    assert f"{XSS}.mp3" in labels
    assert "beforeafter.mp3" in labels
    xss_job = Job.objects.get(original_name=f"{XSS}.mp3")
    rendered = {
        "job page": owner_client.get(xss_job.get_absolute_url()).content.decode(),
        "job list": owner_client.get(reverse("job_list")).content.decode(),
        "row fragment": job_row_html(xss_job),
        "websocket": first_list_socket_message(owner_client),
        "admin list": staff_client.get(reverse("admin:jobs_job_changelist")).content.decode(),
        "admin page": staff_client.get(reverse("admin:jobs_job_change", args=[xss_job.pk])).content.decode(),
    }
    for where, html in rendered.items():
        assert XSS not in html, where
        assert "onerror=alert(1)&gt;" in html, where
    assert XSS not in job_status_html(xss_job)

    for job in jobs:  # every label survives as a download name: no header a browser would refuse
        stem = Stem(job=job, name="vocals", size=job.input_file.size)
        with job.input_file.open("rb") as handle:
            stem.file.save("vocals.mp3", File(handle), save=True)
        response = owner_client.get(stem.get_absolute_url())
        assert response.status_code == 200, job.original_name
        disposition = response["Content-Disposition"]
        assert disposition.startswith("attachment; filename")
        assert "\n" not in disposition
        assert "\x00" not in disposition


def test_label_drops_nul_controls_and_paths_even_when_the_parser_let_them_through():
    """Django's multipart parser cleans names too; the label does not depend on it."""
    assert upload_label("dir/sub\\in\x00side\x1b\u202e.mp3") == "inside.mp3"
    assert upload_label("a" * 400 + ".flac") == "a" * 250 + ".flac"
    assert upload_label("\x00\x01") == "audio"
