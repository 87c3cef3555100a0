"""The shared page and its files, for whoever has the link (no account needed).

Each view finds the link by its token first: an unknown, revoked or expired link is a plain 404
(and counts against the client's address), an address that kept guessing gets 429, and nothing
but the one job's player and files is ever reached from here: no owner name unless the owner
chose to show it, no other job, no account, no API, no websocket.
"""

from functools import wraps
from pathlib import PurePosixPath

from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils.http import content_disposition_header
from django.views.decorators.http import require_GET

from jobs.client_address import client_address
from jobs.downloads import stored_file_response, streaming_response, zip_stream
from jobs.models import ShareLink, Stem
from jobs.realtime.fragments import mixer_stems, mixer_track
from jobs.sharing.links import count_miss, find_link, guessing_blocked


def _private(response: HttpResponse) -> HttpResponse:
    """A share page or file: never kept by a cache (a revoked link must stop at once), never indexed,
    and the token in its address never sent on as a referrer."""
    response["Cache-Control"] = "private, no-store"
    response["Referrer-Policy"] = "no-referrer"
    response["X-Robots-Tag"] = "noindex, nofollow"
    return response


def _by_link(*, downloads: bool = False):
    """A view reached by a share link's token, given the link: 429 for an address that kept
    guessing, 404 for a link that does not open (or, with `downloads`, one that forbids them);
    every answer private."""

    def decorate(view):
        @require_GET
        @wraps(view)
        def by_link(request: HttpRequest, token: str, **kwargs) -> HttpResponse:
            address = client_address(request)
            if guessing_blocked(address):
                return _private(render(request, "jobs/share_refused.html", status=429))
            link = find_link(token)
            if link is None:
                count_miss(address)
                raise Http404("No such page.")
            if downloads and not link.allow_downloads:
                raise Http404("Downloads are not allowed for this link.")
            return _private(view(request, link, token, **kwargs))

        return by_link

    return decorate


@_by_link()
def share_page(request: HttpRequest, link: ShareLink, token: str) -> HttpResponse:
    """The job's player, read-only; opening it counts one view for the owner."""
    link.record_open()
    job = link.job
    context = {
        "job": job,
        "link": link,
        "shared": True,
        "share_token": token,
        "mixer_stems": mixer_stems(job, share_token=token, downloads=link.allow_downloads),
        "mixer_track": mixer_track(job),
        "player_settings": {},  # a visitor's settings are not kept
    }
    return render(request, "jobs/share.html", context)


def _stem(link: ShareLink, stem_name: str) -> Stem:
    stem = link.job.stems.filter(name=stem_name).first()
    if stem is None:
        raise Http404("No such stem.")
    stem.job = link.job
    return stem


@_by_link()
def share_play(request: HttpRequest, link: ShareLink, token: str, stem_name: str) -> HttpResponse:
    """A stem for the shared player, inline (its compressed preview when it has one), with Range."""
    stem = _stem(link, stem_name)
    served = stem.preview or stem.file
    filename = f"{link.job.display_name} - {stem.name}{PurePosixPath(served.name).suffix}"
    return stored_file_response(request, served, filename, as_attachment=False)


@_by_link(downloads=True)
def share_stem(request: HttpRequest, link: ShareLink, token: str, stem_name: str) -> HttpResponse:
    """A stem file as a download, where the owner allowed downloads; else 404."""
    stem = _stem(link, stem_name)
    return stored_file_response(request, stem.file, stem.download_name)


@_by_link(downloads=True)
def share_zip(request: HttpRequest, link: ShareLink, token: str) -> HttpResponse:
    """Every stem in one zip, where the owner allowed downloads; else 404."""
    job = link.job
    stems = list(job.stems.all())
    entries = [(stem.download_name, stem.file.storage, stem.file.name) for stem in stems]
    response = streaming_response(request, zip_stream(entries), content_type="application/zip")
    response["Content-Disposition"] = content_disposition_header(True, f"{job.display_name} - stems.zip")
    return response
