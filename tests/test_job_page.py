"""Job pages and stem files: the owner (and staff) see them; for anyone else they do not exist."""

import json
import re
from datetime import timedelta

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from tests.conftest import ROOT, media_files

pytestmark = pytest.mark.django_db


def stem_url(job, name="vocals", play=False):
    return reverse("stem_file", args=[job.pk, name]) + ("?play" if play else "")


def test_owner_sees_status_player_data_and_download_links(owner_client, owner, make_job):
    job = make_job(owner)
    page = owner_client.get(job.get_absolute_url()).content.decode()
    assert 'data-status="succeeded"' in page
    data = re.search(r'<script id="mixer-stems" type="application/json">(.*?)</script>', page).group(1)
    player = {stem["name"]: stem for stem in json.loads(data)}
    for name in ("bass", "drums", "other", "vocals"):
        assert player[name]["url"] == stem_url(job, name, play=True)
        assert f'href="{stem_url(job, name)}"' in page
    assert page.count("ws-connect=") == 1, "one socket for the page (mix exports push through it)"
    status = re.search(r'<div id="job-[^"]+-status"[^>]*>', page).group(0)
    assert "ws-connect" not in status, "a socket on a block that pushes replace would reconnect each time"


def test_unfinished_job_page_opens_its_socket(owner_client, owner, make_job):
    job = make_job(owner, status="running")
    page = owner_client.get(job.get_absolute_url()).content.decode()
    assert f'ws-connect="/ws/jobs/{job.pk}/?shown=' in page
    assert 'class="job-progress"' in page


def test_failed_job_shows_its_message(owner_client, owner, make_job):
    job = make_job(owner, status="failed", error_message="This file looks cut off.")
    page = owner_client.get(job.get_absolute_url()).content.decode()
    assert "This file looks cut off." in page


def test_stem_download_is_an_attachment_named_after_the_track(owner_client, owner, make_job):
    job = make_job(owner, name="Take Five.flac")
    response = owner_client.get(stem_url(job))
    assert response.status_code == 200
    assert response["Content-Type"] == "audio/mpeg"
    assert response["Content-Disposition"] == 'attachment; filename="Take Five - vocals.mp3"'
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Accept-Ranges"] == "bytes"
    assert b"".join(response.streaming_content) == job.stems.get(name="vocals").file.read()


def test_stem_for_the_player_is_inline(owner_client, owner, make_job):
    response = owner_client.get(stem_url(make_job(owner), play=True))
    assert response["Content-Disposition"].startswith("inline")


def test_other_users_job_is_404_everywhere(outsider_client, owner, make_job):
    job = make_job(owner)
    assert outsider_client.get(job.get_absolute_url()).status_code == 404
    assert outsider_client.get(stem_url(job)).status_code == 404
    assert outsider_client.get(stem_url(job, play=True)).status_code == 404
    assert str(job.pk) not in outsider_client.get(reverse("job_list")).content.decode()


def test_staff_may_open_any_job(staff_client, owner, make_job):
    job = make_job(owner)
    assert staff_client.get(job.get_absolute_url()).status_code == 200
    assert staff_client.get(stem_url(job)).status_code == 200


def test_unknown_stem_and_job_are_404(owner_client, owner, make_job):
    job = make_job(owner)
    assert owner_client.get(stem_url(job, "kazoo")).status_code == 404
    assert (
        owner_client.get(reverse("job_detail", args=["00000000-0000-0000-0000-000000000000"])).status_code
        == 404
    )


def test_anonymous_visitor_is_sent_to_login(client, owner, make_job):
    job = make_job(owner)
    for url in (reverse("job_list"), job.get_absolute_url(), stem_url(job)):
        response = client.get(url)
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("login"))


def test_job_list_shows_only_own_jobs(owner_client, owner, outsider, make_job):
    mine = make_job(owner, name="mine.wav")
    theirs = make_job(outsider, name="theirs.wav")
    page = owner_client.get(reverse("job_list")).content.decode()
    assert f'id="job-{mine.pk}-row"' in page
    assert str(theirs.pk) not in page
    assert 'ws-connect="/ws/jobs/"' in page


def test_job_list_queries_do_not_grow_with_the_number_of_jobs(owner_client, owner, make_job):
    """The list is the busiest page (bench/pages.py): one query for all rows, none per row."""
    make_job(owner, name="first.wav")

    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert owner_client.get(reverse("job_list")).status_code == 200
        return len(captured)

    with_one = queries()
    for status in ("succeeded", "succeeded", "failed", "running", "queued"):
        make_job(owner, status=status, name=f"{status}.wav")
    page = owner_client.get(reverse("job_list")).content.decode()
    assert page.count('-row" data-status=') == 6
    assert queries() == with_one


def csrf_in_form(page: str) -> str:
    return re.search(r'id="upload-form".*?name="csrfmiddlewaretoken" value="([^"]+)"', page, re.S).group(1)


def test_each_visit_gets_its_own_csrf_token_in_the_upload_form(owner, outsider_client, make_audio):
    """The blank form is rendered once per process; the token in it must still be each visitor's."""
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(owner)
    owner_page = browser.get(reverse("job_list")).content.decode()
    outsider_page = outsider_client.get(reverse("job_list")).content.decode()

    assert csrf_in_form(owner_page) != csrf_in_form(outsider_page)
    with make_audio("song.wav", seconds=1).open("rb") as upload:
        answer = browser.post(
            reverse("job_create"), {"files": upload, "csrfmiddlewaretoken": csrf_in_form(owner_page)}
        )
    assert answer.status_code == 302, answer.content.decode()[:300]


def test_a_listed_row_shows_the_jobs_new_status_at_once(owner_client, owner, make_job):
    job = make_job(owner, status="running", name="moving.wav", created_at=timezone.now() - timedelta(days=3))
    first = owner_client.get(reverse("job_list")).content.decode()
    job.progress = 40
    job.save(update_fields=["progress"])
    second = owner_client.get(reverse("job_list")).content.decode()
    job.status = "failed"
    job.save(update_fields=["status"])
    third = owner_client.get(reverse("job_list")).content.decode()

    assert '<progress value="0"' in first
    assert '<progress value="40"' in second
    assert 'data-status="failed"' in third
    assert "3\xa0days" in third


def test_player_can_seek_with_byte_ranges(owner_client, owner, make_job):
    job = make_job(owner)
    whole = job.stems.get(name="vocals").file.read()

    response = owner_client.get(stem_url(job, play=True), headers={"Range": "bytes=100-199"})
    assert response.status_code == 206
    assert response["Content-Range"] == f"bytes 100-199/{len(whole)}"
    assert b"".join(response.streaming_content) == whole[100:200]

    tail = owner_client.get(stem_url(job, play=True), headers={"Range": "bytes=-50"})
    assert b"".join(tail.streaming_content) == whole[-50:]

    beyond = owner_client.get(stem_url(job, play=True), headers={"Range": f"bytes={len(whole)}-"})
    assert beyond.status_code == 416


def test_owner_deletes_a_finished_job_and_all_its_files(owner_client, owner, make_job, media_root):
    job = make_job(owner)
    response = owner_client.post(reverse("job_delete", args=[job.pk]))
    assert response.status_code == 302
    assert not type(job).objects.filter(pk=job.pk).exists()
    assert media_files(media_root) == []
    assert "Deleted" in owner_client.get(reverse("job_list")).content.decode()


def test_unfinished_job_is_not_deleted(owner_client, owner, make_job):
    job = make_job(owner, status="running")
    owner_client.post(reverse("job_delete", args=[job.pk]))
    assert type(job).objects.filter(pk=job.pk).exists()


def test_outsider_cannot_delete(outsider_client, owner, make_job, media_root):
    job = make_job(owner)
    assert outsider_client.post(reverse("job_delete", args=[job.pk])).status_code == 404
    assert type(job).objects.filter(pk=job.pk).exists()
    assert len(media_files(media_root)) == 5


def test_finished_job_page_gives_the_player_every_stem_with_its_peaks(owner_client, owner, make_job):
    job = make_job(owner, duration_seconds=1.0)
    job.stems.filter(name="bass").update(peaks=[0.5, 0.25])

    context = owner_client.get(job.get_absolute_url()).context

    stems = context["mixer_stems"]
    assert [stem["name"] for stem in stems] == ["drums", "bass", "other", "vocals"]
    bass = stems[1]
    url = reverse("stem_file", args=[job.pk, "bass"])
    assert bass == {
        "name": "bass", "label": job.stems.get(name="bass").label, "url": f"{url}?play", "download": url,
        "peaks": [0.5, 0.25], "peaks_per_second": 50, "duration": 1.0,
    }  # fmt: skip


def test_unfinished_job_page_has_no_player_data(owner_client, owner, make_job):
    job = make_job(owner, status="running")
    assert "mixer_stems" not in owner_client.get(job.get_absolute_url()).context


def test_job_list_pages_through_many_jobs_newest_first(owner_client, owner, settings):
    from jobs.models import Job

    settings.STEMSITE_JOBS_PER_PAGE = 3
    for number in range(7):
        Job.objects.create(owner=owner, original_name=f"track-{number}.wav", status="failed", input_file="x")

    def names(page: str) -> list[str]:
        return re.findall(r">(track-\d)\.wav</a>", page)

    first = owner_client.get(reverse("job_list")).content.decode()
    assert names(first) == ["track-6", "track-5", "track-4"]
    assert 'href="?page=2"' in first
    assert "Page 1 of 3" in first
    last = owner_client.get(reverse("job_list") + "?page=3").content.decode()
    assert names(last) == ["track-0"]
    assert 'href="?page=2"' in last
    assert 'href="?page=4"' not in last
    for nonsense in ("99", "abc", "-1"):
        response = owner_client.get(reverse("job_list") + f"?page={nonsense}")
        assert response.status_code == 200, nonsense
        assert names(response.content.decode()), f"?page={nonsense} shows a page of tracks"


@pytest.mark.database_agnostic
def test_no_template_shows_a_note_meant_for_its_readers():
    """Django's `{# #}` ends on its own line: one that runs on is printed on the page as text (the
    job page showed a note on its socket that way). Longer notes go in `{% comment %}`."""
    templates = sorted((ROOT / "templates").rglob("*.html"))
    unclosed = [
        f"{path.relative_to(ROOT)}:{number}"
        for path in templates
        for number, line in enumerate(path.read_text().splitlines(), start=1)
        if re.search(r"\{#(?!.*#\})", line)
    ]
    assert templates
    assert unclosed == []
