"""Importing a track from a link: the job exists at once, downloads on the imports queue through the
address rule, then passes the upload's own checks; every failure is a sentence and leaves nothing.

The links point at real servers on this machine (tests/servers.py). The address rule stays on: the
test-only allow-list names exactly the one local server a test may import from, so a redirect or a
playlist that leads to any other local address is refused as it would be on a real site.
"""

import asyncio
import hashlib
import re
import subprocess

import django_rq
import pytest
from asgiref.sync import async_to_sync
from django.conf import settings
from django.db import connection
from django.urls import reverse

from jobs.background.imports import import_track
from jobs.background.reconcile import reconcile
from jobs.models import Job
from tests.conftest import free_port, media_files
from tests.servers import Site
from tests.test_api import api, assert_error, upload
from tests.test_consumer import communicator
from tests.test_worker import wait_until

pytestmark = pytest.mark.django_db(transaction=True)

IMPORTS, SEPARATIONS = settings.STEMSITE_IMPORT_QUEUE, settings.STEMSITE_QUEUE


@pytest.fixture
def site():
    """The local server imports may reach (named in the test-only allow-list)."""
    server = Site()
    yield server
    server.close()


@pytest.fixture
def private_site():
    """Another local server, not on the allow-list: as private as 127.0.0.1 is on a real site."""
    server = Site()
    server.route("/song.mp3", b"ID3 not for you", "audio/mpeg")
    yield server
    server.close()


@pytest.fixture
def import_dir(settings, site, tmp_path):
    settings.STEMSITE_TEST_FETCH_ALLOWED = frozenset({site.address})
    settings.STEMSITE_IMPORT_DIR = tmp_path / "imports"
    settings.STEMSITE_URL_IMPORT = "direct"
    return settings.STEMSITE_IMPORT_DIR


def leftovers(import_dir) -> list:
    return sorted(import_dir.rglob("*")) if import_dir.exists() else []


def submit(client, url: str, **options):
    return client.post(reverse("job_create"), {"url": url, **options})


def imported(client, url: str) -> Job:
    """Submit the link as the upload form does and run its download here, as the worker would."""
    response = submit(client, url)
    assert response.status_code == 302, response.content.decode()[:800]
    job = Job.objects.latest("created_at")
    import_track(str(job.pk), job.attempt)
    job.refresh_from_db()
    return job


def queued(queue: str) -> list:
    return django_rq.get_queue(queue).get_jobs()


@pytest.mark.database_agnostic
def test_a_link_makes_a_downloading_job_at_once_that_the_imports_queue_downloads(
    owner_client, owner, site, import_dir, make_audio, media_root
):
    data = make_audio("take.mp3", seconds=2).read_bytes()
    site.route("/Blue%20Train.mp3", data)

    response = submit(owner_client, site.url("/Blue%20Train.mp3"))

    job = Job.objects.get()
    assert response.status_code == 302
    assert response["Location"] == job.get_absolute_url()
    assert (job.owner, job.status, job.original_name) == (owner, "downloading", "Blue Train.mp3")
    assert job.source_url == site.url("/Blue%20Train.mp3")
    assert [rq_job.id for rq_job in queued(IMPORTS)] == [f"import-{job.pk}-1"]
    assert queued(SEPARATIONS) == [], "a download never waits behind separations, nor holds them up"
    assert site.hits == [], "nothing is fetched in the request itself"
    assert media_files(media_root) == []
    page = owner_client.get(job.get_absolute_url()).content.decode()
    assert 'data-status="downloading"' in page
    assert "Downloading" in page

    import_track(str(job.pk), job.attempt)

    job.refresh_from_db()
    assert job.status == "queued", job.error_message
    assert job.content_hash == hashlib.sha256(data).hexdigest()
    assert job.input_size == len(data)
    assert job.duration_seconds == pytest.approx(2, abs=0.1)
    assert media_files(media_root) == [media_root / job.input_file.name]
    assert [rq_job.id for rq_job in queued(SEPARATIONS)] == [job.rq_job_id]
    assert site.hits == ["/Blue%20Train.mp3"]
    assert leftovers(import_dir) == []


def test_the_same_link_with_the_same_options_gives_the_same_job(
    client, owner, owner_token, outsider, site, import_dir, make_audio
):
    site.route("/song.mp3", make_audio("song.mp3", seconds=1).read_bytes())
    first = api(client, "post", "/api/jobs", owner_token, data={"url": site.url("/song.mp3")})
    assert first.status_code == 201, first.content
    assert (first.json()["status"], first.json()["source_url"]) == ("downloading", site.url("/song.mp3"))

    again = api(client, "post", "/api/jobs", owner_token, data={"url": site.url("/song.mp3")})
    assert again.status_code == 200
    assert again.json()["id"] == first.json()["id"]
    import_track(first.json()["id"], 1)
    still = api(client, "post", "/api/jobs", owner_token, data={"url": site.url("/song.mp3")})
    assert still.status_code == 200
    assert still.json()["id"] == first.json()["id"]
    assert still.json()["status"] == "queued"

    other = api(
        client, "post", "/api/jobs", owner_token, data={"url": site.url("/song.mp3"), "quality": "fast"}
    )
    assert other.status_code == 201, "other options are another job"
    client.force_login(outsider)
    theirs = submit(client, site.url("/song.mp3"))
    assert Job.objects.get(pk=theirs["Location"].split("/")[2]).owner == outsider, "links are per owner"
    assert Job.objects.filter(owner=owner).count() == 2


def test_a_link_to_audio_already_separated_ends_as_that_job(
    owner_client, owner, site, import_dir, make_audio, media_root
):
    track = make_audio("Naima.mp3", seconds=2)
    with track.open("rb") as handle:
        owner_client.post(reverse("job_create"), {"files": handle})
    uploaded = Job.objects.get()
    site.route("/naima-copy.mp3", track.read_bytes())

    job = imported(owner_client, site.url("/naima-copy.mp3"))

    assert job.duplicate_of == uploaded
    assert job.is_finished
    assert media_files(media_root) == [media_root / uploaded.input_file.name], "no second copy is stored"
    assert list(Job.objects.listed()) == [uploaded], "lists show the one job"
    page = owner_client.get(job.get_absolute_url(), follow=True)
    assert page.redirect_chain == [(uploaded.get_absolute_url(), 302)]
    assert "already separated with these settings" in page.content.decode()
    assert uploaded.get_absolute_url() in owner_client.get(reverse("job_list")).content.decode()
    again = submit(owner_client, site.url("/naima-copy.mp3"))
    assert again["Location"] == uploaded.get_absolute_url(), "the link now gives that job straight away"
    assert leftovers(import_dir) == []


def test_the_api_answers_an_import_that_became_an_existing_job_with_that_job(
    client, owner, owner_token, site, import_dir, make_audio
):
    track = make_audio("Naima.mp3", seconds=1)
    existing = upload(client, owner_token, track).json()
    site.route("/copy.mp3", track.read_bytes())
    made = api(client, "post", "/api/jobs", owner_token, data={"url": site.url("/copy.mp3")}).json()
    import_track(made["id"], 1)

    answer = api(client, "get", f"/api/jobs/{made['id']}", owner_token)
    assert answer.status_code == 200
    assert answer.json()["id"] == existing["id"]
    listed = api(client, "get", "/api/jobs", owner_token).json()
    assert [item["id"] for item in listed["items"]] == [existing["id"]]


def _setup_failure(case: str, site: Site, private_site: Site, settings, make_audio) -> str:
    """Serve what makes `case` fail; the link to import."""
    if case == "not found":
        return site.url("/gone.mp3")
    if case == "not audio":
        site.route("/notes.mp3", b"these are my lyrics, not a song\n" * 40, "audio/mpeg")
        return site.url("/notes.mp3")
    if case == "web page":
        site.route("/track/42", b"<!doctype html><title>A song</title><p>Listen!</p>", "text/html")
        return site.url("/track/42")
    if case == "refused":
        site.route("/members-only.mp3", b"Log in first", "text/plain", status=403)
        return site.url("/members-only.mp3")
    if case == "private redirect":
        site.redirect("/moved.mp3", private_site.url("/song.mp3"))
        return site.url("/moved.mp3")
    if case == "too long":
        settings.STEMSITE_MAX_DURATION_SECONDS = 60
        site.route("/long.mp3", make_audio("long.mp3", seconds=90).read_bytes())
        return site.url("/long.mp3")
    if case == "too large":
        settings.STEMSITE_MAX_UPLOAD_MB = 1
        site.route("/big.wav", make_audio("big.wav", seconds=8).read_bytes(), "audio/wav")
        return site.url("/big.wav")
    if case == "network down":
        closed = f"127.0.0.1:{free_port()}"
        settings.STEMSITE_TEST_FETCH_ALLOWED = frozenset({site.address, closed})
        return f"http://{closed}/song.mp3"
    raise AssertionError(case)


FAILURES = {
    "not found": "Nothing was found at this link (the site answered “not found”). Check the link.",
    "not audio": "This file is not audio we can read. Upload a WAV, MP3, FLAC, OGG, Opus or M4A file.",
    "web page": "This link leads to a web page (or a stream's playlist), not to an audio file",
    "refused": "The site refused to give us this track: it may need a login, an age check",
    "private redirect": "The link led to a private, loopback or reserved address (127.0.0.1)",
    "too long": "The track is 2 minutes long; the limit is 1 minutes.",
    "too large": "The file at this link is larger than the upload limit of 1 MB, so the download was stopped",
    "network down": "The site could not be reached, or stopped answering: the network may be down.",
}


@pytest.mark.database_agnostic
@pytest.mark.parametrize("case", list(FAILURES))
def test_every_failed_import_says_why_and_leaves_nothing(
    case, owner_client, site, private_site, import_dir, settings, make_audio, media_root
):
    url = _setup_failure(case, site, private_site, settings, make_audio)

    job = imported(owner_client, url)

    assert job.status == "failed"
    assert job.error_message.startswith(FAILURES[case]), job.error_message
    page = owner_client.get(job.get_absolute_url()).content.decode()
    assert 'class="error" role="alert"' in page
    assert media_files(media_root) == []
    assert leftovers(import_dir) == []
    assert private_site.hits == [], "nothing ever reached the address the rule refuses"
    assert queued(SEPARATIONS) == []


@pytest.mark.database_agnostic
def test_a_download_stops_at_the_size_limit_not_after(owner_client, site, import_dir, settings, media_root):
    settings.STEMSITE_MAX_UPLOAD_MB = 1
    body = b"\xff\xfb\x90\x00" * (2 * 1024 * 1024)  # 8 MB, length not declared, 1.3 MB a second
    site.trickle("/endless.mp3", body, chunk=64 * 1024, every=0.05, declare_length=False)

    job = imported(owner_client, site.url("/endless.mp3"))

    assert job.error_message.startswith(FAILURES["too large"]), job.error_message
    assert site.sent["/endless.mp3"] < 3 * 1024 * 1024, "the download stopped soon after the limit"
    assert media_files(media_root) == []
    assert leftovers(import_dir) == []


@pytest.mark.database_agnostic
def test_a_slow_site_is_cut_off_at_the_time_limit(owner_client, site, import_dir, settings, make_audio):
    settings.STEMSITE_IMPORT_TIMEOUT_SECONDS = 2
    data = make_audio("slow.mp3", seconds=3).read_bytes()
    site.trickle("/slow.mp3", data, chunk=512, every=0.1)  # 5 KB a second: about 10 s in all

    job = imported(owner_client, site.url("/slow.mp3"))

    assert job.error_message == (
        "The download took longer than the allowed 2 seconds and was stopped. Try again later, "
        "or download the track yourself and upload it."
    )
    assert site.sent["/slow.mp3"] < len(data) / 2
    assert leftovers(import_dir) == []


@pytest.mark.database_agnostic
@pytest.mark.parametrize(
    ("url", "sentence"),
    [
        ("http://127.0.0.1:{private}/song.mp3", "The link points to a private, loopback or reserved address"),
        ("http://10.1.2.3/song.mp3", "The link points to a private, loopback or reserved address (10.1.2.3)"),
        (
            "http://[::1]:{private}/song.mp3",
            "The link points to a private, loopback or reserved address (::1)",
        ),
        ("http://user:secret@{site}/song.mp3", "The link must not contain a user name or password."),
        ("ftp://{site}/song.mp3", "The link must start with http:// or https://."),
        ("file:///etc/passwd", "The link must start with http:// or https://."),
        ("https://no-such-host.invalid/song.mp3", "The site no-such-host.invalid cannot be found."),
    ],
)
def test_a_link_the_address_rule_refuses_makes_no_job(
    url, sentence, owner_client, client, owner_token, site, private_site, import_dir
):
    url = url.format(private=private_site.port, site=site.address)

    response = submit(owner_client, url)

    assert response.status_code == 400
    assert sentence in response.content.decode()
    error = assert_error(api(client, "post", "/api/jobs", owner_token, data={"url": url}), 400, "invalid")
    assert error["message"].startswith(sentence)
    assert not Job.objects.exists()
    assert private_site.hits == []
    assert site.hits == []


@pytest.mark.database_agnostic
def test_a_file_and_a_link_together_are_refused(owner_client, site, import_dir, make_audio):
    with make_audio("a.wav", seconds=1).open("rb") as handle:
        response = owner_client.post(reverse("job_create"), {"files": handle, "url": site.url("/a.mp3")})
    assert response.status_code == 400
    assert "Upload files or paste a link, not both at once." in response.content.decode()
    assert not Job.objects.exists()


@pytest.mark.database_agnostic
def test_imports_can_be_turned_off(owner_client, client, owner_token, site, import_dir, settings):
    settings.STEMSITE_URL_IMPORT = "off"
    page = owner_client.get(reverse("job_list")).content.decode()
    assert 'name="url"' not in page

    response = submit(owner_client, site.url("/song.mp3"))

    assert response.status_code == 400
    assert "Choose an audio file to upload." in response.content.decode()
    error = assert_error(
        api(client, "post", "/api/jobs", owner_token, data={"url": site.url("/a.mp3")}), 400, "invalid"
    )
    assert (
        error["message"]
        == "Importing from links is turned off on this site. Download the track and upload the file."
    )
    assert not Job.objects.exists()
    assert site.hits == []


def test_an_import_counts_against_the_owners_limits_when_made_and_when_it_arrives(
    owner_client, owner, site, import_dir, settings, make_audio, make_job
):
    settings.STEMSITE_MAX_ACTIVE_JOBS = 1
    make_job(owner, status="queued", name="Waiting.wav")
    refused = submit(owner_client, site.url("/a.mp3"))
    assert refused.status_code == 400
    assert "waiting or being separated at once" in refused.content.decode()
    assert Job.objects.count() == 1

    settings.STEMSITE_MAX_ACTIVE_JOBS = 10
    settings.STEMSITE_STORAGE_QUOTA_MB = 1
    site.route("/a.wav", make_audio("a.wav", seconds=8).read_bytes(), "audio/wav")
    job = imported(owner_client, site.url("/a.wav"))
    assert job.status == "failed"
    assert "would take you over your storage quota: 0.0 MB of 1 MB used" in job.error_message


@pytest.mark.database_agnostic
def test_a_failed_import_can_be_tried_again_and_downloads_afresh(owner_client, site, import_dir, make_audio):
    job = imported(owner_client, site.url("/later.mp3"))
    assert job.status == "failed"
    site.route("/later.mp3", make_audio("later.mp3", seconds=1).read_bytes())

    owner_client.post(reverse("job_retry", args=[job.pk]))

    job.refresh_from_db()
    assert (job.status, job.attempt) == ("downloading", 2)
    assert f"import-{job.pk}-2" in [rq_job.id for rq_job in queued(IMPORTS)]
    import_track(str(job.pk), 2)
    job.refresh_from_db()
    assert job.status == "queued", job.error_message


@pytest.mark.database_agnostic
def test_a_download_that_lost_its_worker_starts_again_then_fails(owner, site, import_dir, settings):
    settings.STEMSITE_MAX_RECOVERIES = 1
    settings.STEMSITE_RECONCILE_GRACE_SECONDS = 0
    job = Job.objects.create(
        owner=owner, original_name="lost.mp3", model_name="htdemucs", status="downloading",
        source_url=site.url("/lost.mp3"),
    )  # fmt: skip
    folder = import_dir / f"{job.pk}-1"
    folder.mkdir(parents=True)
    (folder / "download").write_bytes(b"half a song")

    assert reconcile().downloads_recovered == [job.pk]
    job.refresh_from_db()
    assert (job.status, job.attempt, job.recoveries) == ("downloading", 2, 1)
    assert [rq_job.id for rq_job in queued(IMPORTS)] == [f"import-{job.pk}-2"]
    assert not folder.exists(), "what the lost download left is removed"

    django_rq.get_queue(IMPORTS).empty()  # lost again: Redis forgot it
    assert reconcile().downloads_failed == [job.pk]
    job.refresh_from_db()
    assert job.status == "failed"
    assert job.error_message.startswith("The worker stopped unexpectedly while downloading this track.")


SITE_PAGE = b"""<!doctype html><html><head><title>Moanin'</title></head>
<body><h1>Moanin'</h1><audio controls src="/media/moanin.mp3"></audio></body></html>"""


@pytest.fixture
def sites_on(settings, import_dir):
    settings.STEMSITE_URL_IMPORT = "sites"
    return import_dir


@pytest.mark.database_agnostic
def test_a_page_with_an_audio_element_is_imported_when_sites_are_on(
    owner_client, site, sites_on, make_audio, media_root
):
    site.route("/tracks/moanin", SITE_PAGE, "text/html")
    site.route("/media/moanin.mp3", make_audio("moanin.mp3", seconds=2).read_bytes())

    job = imported(owner_client, site.url("/tracks/moanin"))

    assert job.status == "queued", job.error_message
    assert job.original_name.startswith("Moanin'")
    assert job.original_name.endswith(".mp3")
    assert "/media/moanin.mp3" in site.hits
    assert media_files(media_root) == [media_root / job.input_file.name]
    assert leftovers(sites_on) == []


def hls(folder, make_audio, seconds: float = 3) -> dict[str, bytes]:
    """An HLS stream (AAC in MPEG-TS segments of one second) as ffmpeg writes it: name -> bytes."""
    source = make_audio("stream.wav", seconds=seconds)
    subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(source), "-c:a", "aac", "-f", "hls", "-hls_time", "1",
         "-hls_segment_filename", str(folder / "part%d.ts"), str(folder / "index.m3u8")],
        check=True,
    )  # fmt: skip
    return {path.name: path.read_bytes() for path in folder.iterdir()}


@pytest.mark.database_agnostic
def test_an_hls_stream_is_imported_with_yt_dlps_own_downloader(
    owner_client, site, sites_on, make_audio, tmp_path
):
    (tmp_path / "hls").mkdir()
    for name, data in hls(tmp_path / "hls", make_audio).items():
        site.route(
            f"/live/{name}", data, "application/vnd.apple.mpegurl" if name.endswith("m3u8") else "video/mp2t"
        )

    job = imported(owner_client, site.url("/live/index.m3u8"))

    assert job.status == "queued", job.error_message
    assert job.duration_seconds == pytest.approx(3, abs=0.2)
    assert {"/live/part0.ts", "/live/part1.ts"} <= set(site.hits)
    assert leftovers(sites_on) == []


@pytest.mark.database_agnostic
def test_an_hls_playlist_whose_segments_point_at_a_private_address_is_refused(
    owner_client, site, private_site, sites_on, make_audio, tmp_path, media_root
):
    (tmp_path / "hls").mkdir()
    parts = hls(tmp_path / "hls", make_audio)
    for name, data in parts.items():
        private_site.route(f"/{name}", data, "video/mp2t")
    playlist = parts["index.m3u8"].decode()
    playlist = "\n".join(
        private_site.url(f"/{line}") if line.endswith(".ts") else line for line in playlist.splitlines()
    )
    site.route("/stream.m3u8", playlist.encode(), "application/vnd.apple.mpegurl")

    job = imported(owner_client, site.url("/stream.m3u8"))

    assert job.status == "failed"
    assert job.error_message.startswith(FAILURES["private redirect"]), job.error_message
    assert private_site.hits == [], "no segment was fetched from the private address"
    assert media_files(media_root) == []
    assert leftovers(sites_on) == []


@pytest.mark.database_agnostic
def test_a_stream_playlist_is_not_imported_when_only_direct_links_are(owner_client, site, import_dir):
    site.route(
        "/stream.m3u8", b"#EXTM3U\n#EXTINF:1,\npart0.ts\n#EXT-X-ENDLIST\n", "application/vnd.apple.mpegurl"
    )
    job = imported(owner_client, site.url("/stream.m3u8"))
    assert job.error_message.startswith(FAILURES["web page"])
    assert site.hits == ["/stream.m3u8"]


@pytest.mark.database_agnostic
@pytest.mark.slow
@pytest.mark.database_agnostic
def test_cancel_stops_a_download_in_the_worker_and_leaves_nothing(
    owner_client, site, import_dir, start_worker, make_audio, media_root
):
    data = make_audio("long.mp3", seconds=30).read_bytes()
    site.trickle("/long.mp3", data, chunk=4096, every=0.05)  # 80 KB a second: several seconds in all
    environment = {"STEMSITE_TEST_FETCH_ALLOWED": site.address, "STEMSITE_IMPORT_DIR": str(import_dir)}
    start_worker([IMPORTS], extra_env={**environment, "STEMSITE_PROGRESS_INTERVAL": "0.1"})
    submit(owner_client, site.url("/long.mp3"))
    job = Job.objects.get()
    wait_until(lambda: Job.objects.get(pk=job.pk).progress > 0, timeout=90)
    assert leftovers(import_dir), "the download is on its way"

    response = owner_client.post(reverse("job_cancel", args=[job.pk]))

    assert response.status_code == 302
    job.refresh_from_db()
    assert job.status == "canceled"
    wait_until(lambda: "/long.mp3" in site.cut, timeout=30)
    wait_until(lambda: leftovers(import_dir) == [], timeout=30)
    assert site.sent["/long.mp3"] < len(data)
    job.refresh_from_db()
    assert job.status == "canceled"
    assert media_files(media_root) == []


@pytest.mark.database_agnostic
def test_the_job_pages_socket_shows_the_download_progress(
    owner_client, site, import_dir, settings, make_audio
):
    settings.STEMSITE_PROGRESS_INTERVAL = 0
    data = make_audio("song.mp3", seconds=8).read_bytes()
    site.trickle("/song.mp3", data, chunk=8192, every=0.05)
    submit(owner_client, site.url("/song.mp3"))
    job = Job.objects.get()

    def download():
        try:
            import_track(str(job.pk), 1)
        finally:
            connection.close()

    async def watch() -> list[str]:
        socket = communicator(f"/ws/jobs/{job.pk}/", owner_client)
        connected, _ = await socket.connect()
        assert connected
        seen = [await socket.receive_from(timeout=10)]
        running = asyncio.get_running_loop().run_in_executor(None, download)
        while 'data-status="queued"' not in seen[-1]:
            seen.append(await socket.receive_from(timeout=30))
        await running
        await socket.disconnect()
        return seen

    seen = async_to_sync(watch)()

    assert 'data-status="downloading"' in seen[0]
    shown = [int(m) for html in seen if 'data-status="downloading"' in html for m in PERCENT.findall(html)]
    assert any(0 < percent < 100 for percent in shown), seen
    assert shown == sorted(shown)
    assert 'data-status="queued"' in seen[-1]


PERCENT = re.compile(r'class="percent">(\d+)%')


def test_a_callback_given_with_an_import_that_became_an_existing_job_goes_to_that_job(
    client, owner, owner_token, site, import_dir, make_audio, settings
):
    settings.STEMSITE_WEBHOOK_ALLOWED_HOSTS = ["127.0.0.1"]
    settings.STEMSITE_RECONCILE_GRACE_SECONDS = 0
    track = make_audio("Freddie.mp3", seconds=1)
    existing = upload(client, owner_token, track).json()
    site.route("/freddie.mp3", track.read_bytes())
    hook = "http://127.0.0.1:9/hook"
    made = api(
        client, "post", "/api/jobs", owner_token, data={"url": site.url("/freddie.mp3"), "callback_url": hook}
    )

    import_track(made.json()["id"], 1)

    assert Job.objects.get(pk=existing["id"]).callback_url == hook
    pointer = Job.objects.get(pk=made.json()["id"])
    assert pointer.duplicate_of_id is not None
    assert reconcile().events_requeued == [], "the import that became another job sends no event of its own"


@pytest.mark.database_agnostic
def test_a_page_without_audio_on_a_site_yt_dlp_does_not_know_is_refused_with_a_sentence(
    owner_client, site, sites_on, media_root
):
    site.route("/about", b"<!doctype html><title>About us</title><p>We make music.</p>", "text/html")

    job = imported(owner_client, site.url("/about"))

    assert job.error_message.startswith("This site is not one we can import from"), job.error_message
    assert media_files(media_root) == []
    assert leftovers(sites_on) == []
