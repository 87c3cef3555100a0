"""Uploading: good audio becomes one queued job; bad input gets a clear error and leaves nothing."""

import django_rq
import numpy as np
import pytest
import soundfile
from django.conf import settings
from django.urls import reverse

from jobs.models import Job
from tests.conftest import flac_claiming, media_files

pytestmark = pytest.mark.django_db


def post_file(client, path, htmx=False):
    headers = {"HX-Request": "true"} if htmx else {}
    with path.open("rb") as handle:
        return client.post(reverse("job_create"), {"files": handle}, headers=headers)


def queued_rq_jobs():
    return django_rq.get_queue(settings.STEMSITE_QUEUE).get_jobs()


def test_anonymous_upload_is_sent_to_login(client, make_audio):
    response = post_file(client, make_audio("song.wav"))
    assert response.status_code == 302
    assert reverse("login") in response["Location"]
    assert not Job.objects.exists()


def test_upload_creates_a_queued_job_and_enqueues_it_after_commit(
    owner_client, owner, make_audio, media_root, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = post_file(owner_client, make_audio("My Song.mp3", seconds=4), htmx=True)
        assert queued_rq_jobs() == [], "nothing may be enqueued before the row is committed"
    for callback in callbacks:
        callback()

    job = Job.objects.get()
    assert response.status_code == 200
    assert response["HX-Redirect"] == job.get_absolute_url()
    assert (job.owner, job.status, job.original_name, job.model_name) == (
        owner,
        "queued",
        "My Song.mp3",
        "htdemucs",
    )
    assert job.duration_seconds == pytest.approx(4, abs=0.1)
    assert job.input_file.name == f"jobs/{job.pk}/input/my-song.mp3"
    assert media_files(media_root) == [media_root / job.input_file.name]
    [rq_job] = queued_rq_jobs()
    assert rq_job.args == (str(job.pk), 1)
    assert job.options == {
        "quality": "normal", "output_format": "mp3", "mp3_bitrate": 320, "two_stems": "", "precision": "full"
    }  # fmt: skip
    assert rq_job.timeout > 180, "RQ's default timeout would kill an ordinary separation"


def test_plain_form_post_redirects_to_the_job_page(owner_client, make_audio):
    response = post_file(owner_client, make_audio("song.flac"))
    assert response.status_code == 302
    assert response["Location"] == Job.objects.get().get_absolute_url()


@pytest.mark.parametrize("name", ["a.wav", "b.mp3", "c.flac", "d.ogg", "e.opus", "f.m4a"])
def test_common_audio_formats_are_accepted(owner_client, make_audio, name):
    response = post_file(owner_client, make_audio(name, seconds=2))
    assert response.status_code == 302, response.content.decode()[:500]
    assert Job.objects.count() == 1


def test_timeout_grows_with_the_track(owner_client, make_audio, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        post_file(owner_client, make_audio("short.wav", seconds=1))
        post_file(owner_client, make_audio("long.wav", seconds=30))
    timeouts = {job.args[0]: job.timeout for job in queued_rq_jobs()}
    short, long = Job.objects.get(original_name="short.wav"), Job.objects.get(original_name="long.wav")
    assert timeouts[str(long.pk)] > timeouts[str(short.pk)]


def _truncated_mp3(make_audio):
    path = make_audio("cut.mp3", seconds=20)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])
    return path


def _text_as_mp3(tmp_path):
    path = tmp_path / "notes.mp3"
    path.write_text("These are my lyrics, not a song.\n" * 50)
    return path


def _html_as_mp3(tmp_path):
    path = tmp_path / "page.mp3"
    path.write_text("<!doctype html><html><body><h1>Not audio</h1></body></html>")
    return path


def _empty(tmp_path):
    path = tmp_path / "empty.wav"
    path.write_bytes(b"")
    return path


def _mp3_with_html_appended(make_audio):
    """Plays as an mp3 and renders as a page: a polyglot."""
    path = make_audio("polyglot.mp3", seconds=2)
    with path.open("ab") as handle:
        handle.write(b"<html><body><script>alert(document.cookie)</script></body></html>")
    return path


def _zero_duration(tmp_path):
    path = tmp_path / "silence.wav"
    soundfile.write(path, np.zeros((0, 2), dtype=np.float32), 44100)
    return path


def _executable(tmp_path):
    path = tmp_path / "tool.exe"
    path.write_bytes(b"MZ" + b"\0" * 200)
    return path


@pytest.mark.parametrize(
    ("make_bad_file", "message"),
    [
        (lambda tmp, audio: _text_as_mp3(tmp), "not audio we can read"),
        (lambda tmp, audio: _html_as_mp3(tmp), "not audio we can read"),
        (lambda tmp, audio: _empty(tmp), "The file is empty"),
        (lambda tmp, audio: _truncated_mp3(audio), "looks cut off"),
        (lambda tmp, audio: _executable(tmp), "not supported"),
        (lambda tmp, audio: _mp3_with_html_appended(audio), "contains web page code (HTML)"),
        (lambda tmp, audio: _zero_duration(tmp), "contains no audio"),
    ],
    ids=[
        "text-renamed-mp3",
        "html-renamed-mp3",
        "empty",
        "truncated-mp3",
        "wrong-extension",
        "mp3-with-html-appended",
        "zero-duration",
    ],
)
def test_bad_input_gets_a_clear_error_and_leaves_nothing(
    owner_client, make_audio, tmp_path, media_root, make_bad_file, message
):
    response = post_file(owner_client, make_bad_file(tmp_path, make_audio), htmx=True)

    assert response.status_code == 200
    assert message in response.content.decode()
    assert 'id="upload-form"' in response.content.decode()
    assert not Job.objects.exists()
    assert media_files(media_root) == []
    assert queued_rq_jobs() == []


def test_oversize_upload_is_refused(owner_client, make_audio, settings, media_root):
    settings.STEMSITE_MAX_UPLOAD_MB = 1
    response = post_file(owner_client, make_audio("big.wav", seconds=8))
    assert response.status_code == 400
    assert "the limit is 1 MB" in response.content.decode()
    assert not Job.objects.exists()
    assert media_files(media_root) == []


def test_overlong_track_is_refused(owner_client, make_audio, settings):
    settings.STEMSITE_MAX_DURATION_SECONDS = 60
    response = post_file(owner_client, make_audio("long.flac", seconds=90, rate=8000, channels=1))
    assert "the limit is 1 minutes" in response.content.decode()
    assert not Job.objects.exists()


def test_hour_of_silent_flac_is_refused_by_its_length(owner_client, hour_of_silence, media_root):
    assert hour_of_silence.stat().st_size < 1024 * 1024
    response = post_file(owner_client, hour_of_silence, htmx=True)
    assert "The track is 60 minutes long; the limit is 20 minutes." in response.content.decode()
    assert not Job.objects.exists()
    assert media_files(media_root) == []


@pytest.mark.parametrize(
    ("claimed", "message"),
    [
        (10, "holds more audio than its header says (0:10)"),
        (0, "longer than the limit of 20 minutes"),
    ],
    ids=["header-says-ten-seconds", "header-gives-no-length"],
)
def test_flac_whose_header_lies_about_its_length_is_refused(
    owner_client, hour_of_silence, tmp_path, media_root, claimed, message
):
    lying = flac_claiming(hour_of_silence, tmp_path / "short.flac", seconds=claimed)
    response = post_file(owner_client, lying, htmx=True)
    assert message in response.content.decode()
    assert not Job.objects.exists()
    assert media_files(media_root) == []


def test_job_records_the_decoded_length_not_the_header(owner_client, make_audio):
    post_file(owner_client, make_audio("song.mp3", seconds=3))
    assert Job.objects.get().duration_seconds == pytest.approx(3, abs=0.01)


def test_hostile_file_name_never_becomes_a_path(owner_client, make_audio, tmp_path):
    path = make_audio("song.wav")
    hostile = tmp_path / "..%2F..%2Fetc <img src=x onerror=alert(1)>.wav"
    path.rename(hostile)
    post_file(owner_client, hostile)
    job = Job.objects.get()
    assert job.input_file.name.startswith(f"jobs/{job.pk}/input/")
    assert "/../" not in job.input_file.name
    assert "<" not in job.input_file.name
    page = owner_client.get(job.get_absolute_url()).content.decode()
    assert "<img src=x" not in page
    assert "&lt;img src=x onerror=alert(1)&gt;" in page
