"""Share links: the owner makes one, anyone with it plays the track (and downloads it where allowed),
nothing else of the owner's is reached from it, and revoked, expired or guessed links are 404."""

import hashlib
import re
from datetime import timedelta

import pytest
from django.db import connection
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from jobs.models import ShareLink
from jobs.sharing.links import create_link
from tests.test_access import open_socket
from tests.test_api import api, assert_error

pytestmark = pytest.mark.django_db(transaction=True)

LINK = re.compile(r'value="(http://testserver/s/([A-Za-z0-9_-]+)/)"')


def make_link(client, job, expires="week", **choices) -> tuple[str, str]:
    """Make a link on the job page as the owner does (htmx); (its URL, its token)."""
    data = {"expires": expires, **{name: "on" for name, on in choices.items() if on}}
    response = client.post(reverse("share_create", args=[job.pk]), data, headers={"HX-Request": "true"})
    assert response.status_code == 200, response.content.decode()[:500]
    assert response["Cache-Control"] == "no-store"
    url, token = LINK.search(response.content.decode()).groups()
    return url, token


def body(response) -> bytes:
    return b"".join(response.streaming_content) if response.streaming else response.content


def test_the_owner_makes_a_link_that_plays_the_track_for_anyone(owner_client, owner, make_job):
    job = make_job(owner, name="Round Midnight.wav")
    url, token = make_link(owner_client, job)

    page = Client().get(url)

    assert page.status_code == 200
    html = page.content.decode()
    assert "Round Midnight" in html
    assert "data-mixer" in html
    assert "data-read-only" in html
    assert owner.username not in html, "no owner name unless the owner chooses"
    assert str(job.pk) not in html, "nothing names the job itself"
    assert "ws-connect" not in html, "the shared page opens no socket"
    assert "Export" not in html
    assert 'action="/jobs/' not in html
    assert page["Cache-Control"] == "private, no-store"
    assert page["Referrer-Policy"] == "no-referrer"
    assert page["X-Robots-Tag"] == "noindex, nofollow"
    stems = re.findall(rf'"url": "(/s/{token}/play/\w+/)"', html)
    assert len(stems) == 4
    played = Client().get(stems[0], HTTP_RANGE="bytes=0-99")
    assert played.status_code == 206
    assert played["Content-Type"] == "audio/mpeg"
    assert played["Content-Disposition"].startswith("inline")
    assert len(body(played)) == 100


def test_the_token_is_long_random_and_stored_only_as_its_hash(owner_client, owner, make_job):
    job = make_job(owner)
    _, token = make_link(owner_client, job)
    _, other = make_link(owner_client, job)

    assert len(token) == 43, "32 random bytes, url-safe"
    assert token != other
    link = ShareLink.objects.get(token_hash=hashlib.sha256(token.encode()).hexdigest())
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM jobs_sharelink")
        stored = repr(cursor.fetchall())
    assert token not in stored
    assert other not in stored
    page = owner_client.get(job.get_absolute_url()).content.decode()
    assert token not in page, "the link is shown once, when it is made"
    assert f'id="share-{link.pk}"' in page


def test_downloads_only_where_the_owner_allowed_them(owner_client, owner, make_job):
    job = make_job(owner, name="Song.wav")
    _, play_only = make_link(owner_client, job)
    _, downloads = make_link(owner_client, job, allow_downloads=True)
    anonymous = Client()

    assert anonymous.get(f"/s/{play_only}/stems/vocals/").status_code == 404
    assert anonymous.get(f"/s/{play_only}/stems.zip").status_code == 404
    assert f"/s/{play_only}/stems/" not in anonymous.get(f"/s/{play_only}/").content.decode()
    assert anonymous.get(f"/s/{play_only}/play/vocals/").status_code == 200, "playing is what a link is for"

    stem = anonymous.get(f"/s/{downloads}/stems/vocals/")
    assert stem.status_code == 200
    assert stem["Content-Disposition"] == 'attachment; filename="Song - vocals.mp3"'
    assert body(stem) == job.stems.get(name="vocals").file.open("rb").read()
    archive = anonymous.get(f"/s/{downloads}/stems.zip")
    assert archive.status_code == 200
    assert archive["Content-Type"] == "application/zip"
    assert f'href="/s/{downloads}/stems/vocals/"' in anonymous.get(f"/s/{downloads}/").content.decode()


def test_the_owners_name_shows_only_when_chosen(owner_client, owner, make_job):
    job = make_job(owner)
    _, hidden = make_link(owner_client, job)
    _, shown = make_link(owner_client, job, show_owner=True)
    assert f"Shared by {owner.username}" not in Client().get(f"/s/{hidden}/").content.decode()
    assert f"Shared by {owner.username}" in Client().get(f"/s/{shown}/").content.decode()


def test_the_owner_sees_how_often_a_link_was_opened(owner_client, owner, make_job):
    job = make_job(owner)
    _, token = make_link(owner_client, job)
    for _ in range(3):
        Client().get(f"/s/{token}/")
    Client().get(f"/s/{token}/play/vocals/")  # the player's files are not openings

    link = ShareLink.objects.get()
    assert link.open_count == 3
    page = owner_client.get(job.get_absolute_url()).content.decode()
    assert "<td data-opens>3 times</td>" in page


@pytest.mark.parametrize("expires", ["day", "week"])
def test_a_link_stops_opening_when_it_expires(owner_client, owner, make_job, expires):
    job = make_job(owner)
    _, token = make_link(owner_client, job, expires=expires)
    link = ShareLink.objects.get()
    lifetime = {"day": timedelta(days=1), "week": timedelta(days=7)}[expires]
    assert link.expires_at == pytest.approx(timezone.now() + lifetime, abs=timedelta(seconds=30))
    assert Client().get(f"/s/{token}/").status_code == 200

    ShareLink.objects.update(expires_at=timezone.now() - timedelta(seconds=1))

    for url in (f"/s/{token}/", f"/s/{token}/play/vocals/"):
        response = Client().get(url)
        assert response.status_code == 404
        assert "Not found" in response.content.decode()
        assert "Round" not in response.content.decode()
    assert "expired" in owner_client.get(job.get_absolute_url()).content.decode()


def test_a_link_made_to_last_opens_until_revoked_from_the_job_page(owner_client, owner, make_job):
    job = make_job(owner, name="Secret Song.wav")
    _, token = make_link(owner_client, job, expires="never", allow_downloads=True)
    link = ShareLink.objects.get()
    assert link.expires_at is None

    response = owner_client.post(
        reverse("share_revoke", args=[job.pk, link.pk]), headers={"HX-Request": "true"}
    )

    assert response.status_code == 200
    assert "revoked" in response.content.decode()
    for url in (
        f"/s/{token}/",
        f"/s/{token}/play/vocals/",
        f"/s/{token}/stems/vocals/",
        f"/s/{token}/stems.zip",
    ):
        answer = Client().get(url)
        assert answer.status_code == 404, url
        assert b"Secret Song" not in body(answer)


def test_deleting_the_job_kills_its_links(owner_client, owner, make_job):
    job = make_job(owner)
    _, token = make_link(owner_client, job)
    owner_client.post(reverse("job_delete", args=[job.pk]))
    assert not ShareLink.objects.exists()
    assert Client().get(f"/s/{token}/").status_code == 404


def test_only_a_finished_separation_can_be_shared(owner_client, owner, make_job):
    job = make_job(owner, status="running")
    response = owner_client.post(
        reverse("share_create", args=[job.pk]), {"expires": "week"}, headers={"HX-Request": "true"}
    )
    assert response.status_code == 400
    assert "Only a finished separation can be shared" in response.content.decode()
    assert not ShareLink.objects.exists()
    bad = owner_client.post(
        reverse("share_create", args=[make_job(owner).pk]),
        {"expires": "forever"},
        headers={"HX-Request": "true"},
    )
    assert bad.status_code == 400
    assert "Choose how long the link works" in bad.content.decode()


def test_an_outsider_can_neither_make_nor_revoke_anothers_links(
    outsider_client, owner_client, owner, make_job
):
    job = make_job(owner)
    _, token = make_link(owner_client, job)
    link = ShareLink.objects.get()

    assert (
        outsider_client.post(reverse("share_create", args=[job.pk]), {"expires": "week"}).status_code == 404
    )
    assert outsider_client.post(reverse("share_revoke", args=[job.pk, link.pk])).status_code == 404
    assert ShareLink.objects.count() == 1
    assert ShareLink.objects.get().is_active


def test_staff_revoke_links_but_only_owners_make_them(staff_client, owner_client, owner, make_job):
    job = make_job(owner)
    _, token = make_link(owner_client, job)
    link = ShareLink.objects.get()
    assert staff_client.post(reverse("share_create", args=[job.pk]), {"expires": "week"}).status_code == 404

    listing = staff_client.get(reverse("admin:jobs_sharelink_changelist")).content.decode()
    assert job.original_name in listing
    assert owner.username in listing
    response = staff_client.post(
        reverse("admin:jobs_sharelink_changelist"),
        {"action": "revoke_links", "_selected_action": [link.pk]},
        follow=True,
    )
    assert "1 share link(s) revoked." in response.content.decode()
    assert Client().get(f"/s/{token}/").status_code == 404
    assert staff_client.get(reverse("admin:jobs_sharelink_add")).status_code == 403


def test_an_address_that_keeps_guessing_is_refused_even_a_real_link(owner_client, owner, make_job, settings):
    settings.STEMSITE_SHARE_GUESSES_PER_ADDRESS = 5
    job = make_job(owner)
    _, token = make_link(owner_client, job)
    guesser, neighbour = Client(REMOTE_ADDR="203.0.113.9"), Client(REMOTE_ADDR="203.0.113.10")

    for attempt in range(5):
        guess = token[:-4] + f"{attempt:04d}"
        assert guesser.get(f"/s/{guess}/").status_code == 404

    refused = guesser.get(f"/s/{token}/")
    assert refused.status_code == 429
    assert "Too many links that do not open" in refused.content.decode()
    assert guesser.get(f"/s/{token}/play/vocals/").status_code == 429
    assert neighbour.get(f"/s/{token}/").status_code == 200, "the limit is per client address"
    assert ShareLink.objects.get().open_count == 1


def test_the_guessing_limit_follows_the_address_the_trusted_proxy_saw(
    owner_client, owner, make_job, settings
):
    settings.STEMSITE_SHARE_GUESSES_PER_ADDRESS = 2
    settings.STEMSITE_TRUSTED_PROXIES = 1
    job = make_job(owner)
    _, token = make_link(owner_client, job)
    behind_proxy = Client(REMOTE_ADDR="10.0.0.1")
    for _ in range(2):
        behind_proxy.get(
            "/s/nothing-here-at-all-nothing-here-at-all-xxx/", HTTP_X_FORWARDED_FOR="198.51.100.7"
        )
    assert behind_proxy.get(f"/s/{token}/", HTTP_X_FORWARDED_FOR="198.51.100.7").status_code == 429
    assert behind_proxy.get(f"/s/{token}/", HTTP_X_FORWARDED_FOR="198.51.100.8").status_code == 200


def test_an_anonymous_visitor_with_a_link_reaches_nothing_else(client, owner, owner_client, make_job):
    job = make_job(owner, name="Secret Song.wav")
    other = make_job(owner, name="Other Song.wav")
    _, token = make_link(owner_client, job, allow_downloads=True, show_owner=True)
    assert client.get(f"/s/{token}/").status_code == 200

    for url in (
        job.get_absolute_url(),
        other.get_absolute_url(),
        reverse("stem_file", args=[job.pk, "vocals"]),
        reverse("stems_zip", args=[job.pk]),
        reverse("account"),
        reverse("job_list"),
    ):
        response = client.get(url)
        assert response.status_code == 302, url
        assert response["Location"].startswith(reverse("login")), url
    for url in (
        f"/api/jobs/{job.pk}",
        "/api/jobs",
        f"/api/jobs/{job.pk}/shares",
        f"/api/jobs/{job.pk}/stems",
    ):
        assert_error(client.get(url), 401, "unauthorized")
    assert f"/s/{token}/stems/vocals/" in client.get(f"/s/{token}/").content.decode()
    assert (
        body(client.get(f"/s/{token}/stems/vocals/")) == job.stems.get(name="vocals").file.open("rb").read()
    )
    origin = (b"origin", b"http://localhost")
    assert open_socket(f"/ws/jobs/{job.pk}/", [origin]) is False
    assert open_socket("/ws/jobs/", [origin]) is False


def test_an_outsider_with_a_link_sees_only_that_job(outsider_client, owner, owner_client, make_job):
    job = make_job(owner, name="Shared Song.wav")
    other = make_job(owner, name="Private Song.wav")
    _, token = make_link(owner_client, job)

    page = outsider_client.get(f"/s/{token}/").content.decode()
    assert "Shared Song" in page
    assert "Private Song" not in page
    assert outsider_client.get(job.get_absolute_url()).status_code == 404
    assert outsider_client.get(other.get_absolute_url()).status_code == 404
    assert "Shared Song" not in outsider_client.get(reverse("job_list")).content.decode()
    assert outsider_client.get(reverse("stem_file", args=[job.pk, "vocals"])).status_code == 404
    cookie = (b"cookie", f"sessionid={outsider_client.cookies['sessionid'].value}".encode())
    assert open_socket(f"/ws/jobs/{job.pk}/", [(b"origin", b"http://localhost"), cookie]) is False


# The API


def test_the_api_makes_lists_and_revokes_a_jobs_links(client, owner, owner_token, make_job):
    job = make_job(owner)

    made = api(
        client, "post", f"/api/jobs/{job.pk}/shares", owner_token,
        data={"expires": "day", "allow_downloads": True}, content_type="application/json",
    )  # fmt: skip

    assert made.status_code == 201, made.content
    link = made.json()
    assert link["url"].startswith("http://testserver/s/")
    assert (link["active"], link["allow_downloads"], link["show_owner"]) == (True, True, False)
    assert Client().get(link["url"]).status_code == 200
    listed = api(client, "get", f"/api/jobs/{job.pk}/shares", owner_token).json()
    assert [(item["id"], item["url"], item["open_count"]) for item in listed] == [(link["id"], None, 1)]
    one = api(client, "get", f"/api/jobs/{job.pk}/shares/{link['id']}", owner_token).json()
    assert one["url"] is None, "the link is in the answer that made it, never again"

    assert api(client, "delete", f"/api/jobs/{job.pk}/shares/{link['id']}", owner_token).status_code == 204
    assert Client().get(link["url"]).status_code == 404
    assert api(client, "get", f"/api/jobs/{job.pk}/shares", owner_token).json()[0]["active"] is False
    again = api(client, "delete", f"/api/jobs/{job.pk}/shares/{link['id']}", owner_token)
    assert_error(again, 404, "not_found")


def test_the_api_refuses_a_job_that_is_not_finished_and_bad_choices(client, owner, owner_token, make_job):
    running = make_job(owner, status="running")
    assert_error(api(client, "post", f"/api/jobs/{running.pk}/shares", owner_token), 409, "conflict")
    job = make_job(owner)
    bad = api(
        client, "post", f"/api/jobs/{job.pk}/shares", owner_token,
        data={"expires": "forever"}, content_type="application/json",
    )  # fmt: skip
    assert_error(bad, 400, "invalid")
    assert not ShareLink.objects.exists()


def test_an_outsider_reaches_no_link_of_anothers_job_through_the_api(
    client, owner, outsider_token, make_job, owner_token
):
    job = make_job(owner)
    link, _ = create_link(job, "week", allow_downloads=False, show_owner=False)
    for method, url in (
        ("post", f"/api/jobs/{job.pk}/shares"),
        ("get", f"/api/jobs/{job.pk}/shares"),
        ("get", f"/api/jobs/{job.pk}/shares/{link.pk}"),
        ("delete", f"/api/jobs/{job.pk}/shares/{link.pk}"),
    ):
        assert_error(api(client, method, url, outsider_token), 404, "not_found")
    link.refresh_from_db()
    assert link.is_active
    assert ShareLink.objects.count() == 1
