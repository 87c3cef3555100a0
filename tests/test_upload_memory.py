"""A large upload through a real daphne leaves the web process's memory flat: the body goes from
disk to disk in small pieces, and nothing that checks it holds it whole."""

import http.client
import re
import secrets
import threading
from pathlib import Path

import pytest
from django.conf import settings
from django.test import Client

from jobs.models import Job
from tests.conftest import daphne_server

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.database_agnostic]

MB = 1024 * 1024
UPLOAD_MB = 200
# Before the fix daphne grew by more than the upload itself (the whole body sat in its queue).
MAX_GROWTH_MB = 60


def write_wav(path: Path, megabytes: int) -> Path:
    """A 16-bit stereo 44.1 kHz wav of about `megabytes` MB, written 1 MB at a time (~20 min)."""
    frames = megabytes * MB // 4
    header = b"RIFF" + (36 + frames * 4).to_bytes(4, "little") + b"WAVEfmt " + (16).to_bytes(4, "little")
    header += (1).to_bytes(2, "little") + (2).to_bytes(2, "little") + (44100).to_bytes(4, "little")
    header += (44100 * 4).to_bytes(4, "little") + (4).to_bytes(2, "little") + (16).to_bytes(2, "little")
    header += b"data" + (frames * 4).to_bytes(4, "little")
    block = bytes(range(256)) * (MB // 256)  # a quiet ramp: sound, and no text in it
    with path.open("wb") as handle:
        handle.write(header)
        for _ in range(megabytes):
            handle.write(block)
    return path


def rss_kb(pid: int) -> int:
    return int(re.search(r"^VmRSS:\s+(\d+)", Path(f"/proc/{pid}/status").read_text(), re.MULTILINE)[1])


class PeakRss(threading.Thread):
    """The highest VmRSS of a process, read every 20 ms until stopped."""

    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.pid, self.peak = pid, rss_kb(pid)
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.wait(0.02):
            self.peak = max(self.peak, rss_kb(self.pid))

    def stop(self) -> int:
        self.stopping.set()
        self.join()
        return self.peak


@pytest.fixture
def daphne_site(process_env, tmp_path):
    """daphne alone, as production runs it, taking uploads up to a little over UPLOAD_MB."""
    env = {
        **process_env,
        "SECRET_KEY": settings.SECRET_KEY,  # sessions made here log people in there
        "STEMSITE_MAX_UPLOAD_MB": str(UPLOAD_MB + 8),
        "STEMSITE_MAX_DURATION_SECONDS": "3600",
        "STEMSITE_STORAGE_QUOTA_MB": "0",
    }
    with daphne_server(env, tmp_path / "web.log") as (web, port):
        yield web, port


def stream_upload(port: int, session: str, path: Path) -> http.client.HTTPResponse:
    """POST the upload form with `path` as its file, sent from disk 1 MB at a time."""
    token, boundary = secrets.token_hex(16), secrets.token_hex(16)
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="{path.name}"\r\n'
        "Content-Type: audio/wav\r\n\r\n"
    ).encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    connection.putrequest("POST", "/jobs/new/")
    connection.putheader("Content-Type", f"multipart/form-data; boundary={boundary}")
    connection.putheader("Content-Length", str(len(head) + path.stat().st_size + len(tail)))
    connection.putheader("Cookie", f"sessionid={session}; csrftoken={token}")
    connection.putheader("X-CSRFToken", token)
    connection.endheaders()
    connection.send(head)
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(MB), b""):
            connection.send(block)
    connection.send(tail)
    response = connection.getresponse()
    response.read()
    connection.close()
    return response


def test_a_200_mb_upload_grows_daphne_by_far_less_than_its_size(daphne_site, owner, tmp_path, media_root):
    web, port = daphne_site
    wav = write_wav(tmp_path / "long.wav", UPLOAD_MB)
    client = Client()
    client.force_login(owner)
    session = client.cookies["sessionid"].value
    warm_up = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    warm_up.request("GET", "/", headers={"Cookie": f"sessionid={session}"})
    assert warm_up.getresponse().status == 200  # the upload page's imports are loaded: a fair baseline
    warm_up.close()
    baseline = rss_kb(web.pid)
    watch = PeakRss(web.pid)
    watch.start()
    try:
        response = stream_upload(port, session, wav)
    finally:
        peak = watch.stop()
    assert response.status == 302, response.status
    job = Job.objects.get(owner=owner)
    assert job.input_size == wav.stat().st_size
    assert (peak - baseline) / 1024 < MAX_GROWTH_MB, f"daphne grew by {(peak - baseline) / 1024:.0f} MB"
