"""Nothing of one user reaches another: every route and every socket is walked as an outsider.

The routes are enumerated from the URLconf, not listed here, so a route added later without an
owner check fails this test. A route that names an object (a job id, a stem, an admin object id)
is filled with the owner's real job; the outsider must get exactly what a job that does not exist
gets (404 on the site's own routes) and the job must come out untouched.
"""

import re
import uuid

import pytest
from asgiref.sync import async_to_sync
from channels.testing import WebsocketCommunicator
from django.urls import URLPattern, URLResolver, get_resolver, resolve, reverse
from django.urls.converters import IntConverter, PathConverter, SlugConverter, StringConverter, UUIDConverter
from django.urls.resolvers import RoutePattern

from jobs.realtime.routing import websocket_urlpatterns
from jobs.sharing.links import create_link
from stemsite.asgi import application
from tests.conftest import media_files

pytestmark = pytest.mark.django_db(transaction=True)

MISSING = uuid.UUID("00000000-0000-4000-8000-000000000000")


def walk(resolver: URLResolver, trail: tuple = ()):
    """Every URL pattern under the resolver, with the chain of patterns that leads to it."""
    for entry in resolver.url_patterns:
        if isinstance(entry, URLResolver):
            yield from walk(entry, (*trail, entry.pattern))
        elif isinstance(entry, URLPattern):
            yield (*trail, entry.pattern), entry


ROUTE_ARGUMENT = re.compile(r"<(?:(?P<converter>\w+):)?(?P<name>\w+)>")
REGEX_GROUP = re.compile(r"\(\?P<(?P<name>\w+)>[^)]*\)")
# Values for regex routes: admin's app index and the catch-all that redirects to login, and the
# API's catch-all that answers a JSON 404.
REGEX_VALUES = {"app_label": "jobs", "url": "nothing-here/", "token": "x", "rest": "nothing-here"}


def fill(parts: tuple, job, object_id, token: str = "x", share: int = 0) -> tuple[str, bool]:
    """The URL of a route with its arguments filled, and whether it names an object.

    UUID and ids take `object_id` (the owner's job, or a missing one); a stem's name or number
    takes the owner's first stem; a mix export's id takes the owner's first export; a share
    link's number takes `share`. A share link's token is its own key: an outsider walks with one
    that opens nothing.
    """
    stem = job.stems.first()
    export = job.exports.first()
    url, names_object = "", False

    def value(name: str, converter) -> str:
        nonlocal names_object
        if name == "export_id":
            names_object = True
            return str(export.pk)
        if isinstance(converter, UUIDConverter) or name.endswith("id"):
            names_object = True
            return str(object_id)
        if name == "share":
            names_object = True
            return str(share)
        if isinstance(converter, IntConverter):
            names_object = names_object or "stem" in name
            return str(stem.pk if "stem" in name else 0)
        if isinstance(converter, SlugConverter):
            names_object = True
            return stem.name
        if name == "token":
            return token
        if isinstance(converter, StringConverter | PathConverter):
            return "x"
        raise AssertionError(f"no value for a {type(converter).__name__} argument {name!r}")

    for part in parts:
        text = str(part)
        if isinstance(part, RoutePattern):
            text = ROUTE_ARGUMENT.sub(lambda m, part=part: value(m["name"], part.converters[m["name"]]), text)
        else:
            text = text.removeprefix("^").removesuffix("$").removesuffix("\\Z")
            text = REGEX_GROUP.sub(lambda m: REGEX_VALUES.get(m["name"]) or value(m["name"], None), text)
            text = re.sub(r"\\(.)", r"\1", text.replace("?", ""))  # quantifiers off, escapes undone
        url += text
    return "/" + url, names_object


def site_routes(job, token: str = "x") -> list[tuple[str, str, bool, bool]]:
    """(URL, the same URL for a missing job, names an object, is one of the site's own routes)."""
    routes = []
    share = job.share_links.values_list("pk", flat=True).first() or 0
    for parts, pattern in walk(get_resolver()):
        url, names_object = fill(parts, job, job.pk, token, share)
        missing_url, _ = fill(parts, job, MISSING, share=share)
        match = resolve(url)
        if match.func is not pattern.callback:
            shadowed = match.route == "".join(str(part) for part in parts)
            assert shadowed, f"could not build a URL for route {match.route!r} (got {url})"
            continue  # an earlier route with the same text answers it
        site_own = not str(parts[0]).startswith("admin/")
        routes.append((url, missing_url, names_object, site_own))
    return routes


def fetch(client, url: str):
    """GET, or POST where the route only takes POST: the request the route really serves."""
    response = client.get(url)
    if response.status_code == 405:
        response = client.post(url)
    return response


def body(response) -> bytes:
    return b"".join(response.streaming_content) if response.streaming else response.content


def snapshot(job):
    job.refresh_from_db()
    links = sorted(job.share_links.values_list("pk", "revoked_at"))
    return job.status, job.attempt, sorted(job.stems.values_list("name", flat=True)), links


def test_every_route_hides_another_users_job(
    outsider_client, outsider, owner, make_job, make_export, media_root
):
    job = make_job(owner, name="Secret Song.wav")
    make_export(job)
    create_link(job, "never", allow_downloads=True, show_owner=True)
    before, files_before = snapshot(job), media_files(media_root)
    routes = site_routes(job)
    owned = [r for r in routes if r[2] and r[3]]
    assert len(owned) >= 5, f"the walk found too few of the site's job routes: {owned}"

    for url, missing_url, names_object, site_own in routes:
        outsider_client.force_login(outsider)  # again: one of the routes is the log-out
        response = fetch(outsider_client, url)
        outsider_client.force_login(outsider)
        missing = fetch(outsider_client, missing_url)
        if names_object:
            assert response.status_code == missing.status_code, (url, response.status_code)
            expected = (missing.get("Location") or "").replace(str(MISSING), str(job.pk))
            assert (response.get("Location") or "") == expected, url
            if site_own:
                assert response.status_code == 404, (url, response.status_code)
        assert b"Secret Song" not in body(response), url
        assert str(job.pk).encode() not in body(response), url
        assert snapshot(job) == before, f"{url} changed another user's job"
        assert media_files(media_root) == files_before, f"{url} touched another user's files"


def test_owner_reaches_the_routes_the_walk_fills(owner_client, owner, make_job, make_export):
    """The walk's URLs point at real objects: the owner gets them, so a 404 above means refusal."""
    job = make_job(owner)
    make_export(job)
    _, token = create_link(job, "week", allow_downloads=True, show_owner=False)
    for url, _, names_object, site_own in site_routes(job, token):
        if names_object and site_own:
            response = owner_client.get(url)
            assert response.status_code in (200, 206, 405), (url, response.status_code)


def socket_paths(job) -> list[str]:
    return [fill((pattern.pattern,), job, job.pk)[0] for pattern in websocket_urlpatterns]


def connects(path: str, client) -> bool:
    async def attempt():
        cookie = f"sessionid={client.cookies['sessionid'].value}".encode()
        headers = [(b"origin", b"http://localhost"), (b"cookie", cookie)]
        socket = WebsocketCommunicator(application, path, headers=headers)
        connected, _ = await socket.connect()
        if connected:
            text = await socket.receive_from(timeout=5)
            await socket.disconnect()
            return text
        await socket.disconnect()
        return None

    return async_to_sync(attempt)()


def test_every_socket_hides_another_users_job(owner_client, outsider_client, owner, make_job):
    job = make_job(owner, name="Secret Song.wav", status="running")
    paths = socket_paths(job)
    assert len(paths) == len(websocket_urlpatterns) >= 2
    for path in paths:
        mine = connects(path, owner_client)
        theirs = connects(path, outsider_client)
        assert mine is not None, f"the owner's socket {path} should open"
        assert str(job.pk) in mine, f"the owner's socket {path} should send the job"
        assert theirs is None or str(job.pk) not in theirs, f"{path} showed another user's job"
        if str(job.pk) in path:
            assert theirs is None, f"{path} opened for an outsider"


def test_media_is_not_served_as_a_folder(owner_client, owner, make_job, staff_client, settings):
    job = make_job(owner)
    for client in (owner_client, staff_client):
        for url in (
            settings.MEDIA_URL,
            f"{settings.MEDIA_URL}jobs/",
            f"{settings.MEDIA_URL}{job.input_file.name}",
            f"/media/{job.input_file.name}",
            f"/media/jobs/{job.pk}/",
            f"/static/../media/{job.input_file.name}",
        ):
            assert client.get(url).status_code == 404, url


def open_socket(path: str, headers: list[tuple[bytes, bytes]]) -> bool:
    async def attempt():
        socket = WebsocketCommunicator(application, path, headers=headers)
        connected, _ = await socket.connect()
        await socket.disconnect()
        return connected

    return async_to_sync(attempt)()


def test_sockets_check_origin_and_session(owner_client, owner, make_job):
    """Only the site's own pages (an allowed Origin) with a live session open a socket."""
    job = make_job(owner, status="running")
    path = f"/ws/jobs/{job.pk}/"
    cookie = (b"cookie", f"sessionid={owner_client.cookies['sessionid'].value}".encode())
    assert open_socket(path, [(b"origin", b"http://localhost"), cookie]) is True

    assert open_socket(path, [cookie]) is False, "no Origin header"
    assert open_socket(path, [(b"origin", b"http://localhost.evil.example"), cookie]) is False
    assert open_socket(path, [(b"origin", b"http://localhost"), (b"cookie", b"sessionid=forged")]) is False

    owner_client.post(reverse("logout"))
    assert open_socket(path, [(b"origin", b"http://localhost"), cookie]) is False, "a logged-out session"


def test_stem_files_are_never_sniffed_and_download_as_attachments(owner_client, owner, make_job):
    job = make_job(owner, name="Song.wav")
    url = reverse("stem_file", args=[job.pk, "vocals"])
    for response in (
        owner_client.get(url),
        owner_client.get(url, HTTP_RANGE="bytes=0-99"),
        owner_client.get(url + "?play"),
    ):
        assert response.status_code in (200, 206)
        assert response["X-Content-Type-Options"] == "nosniff"
        assert response["Content-Type"] == "audio/mpeg"
    assert owner_client.get(url)["Content-Disposition"] == 'attachment; filename="Song - vocals.mp3"'
