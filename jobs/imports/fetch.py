"""Direct links: one GET through the import proxy, written to disk as it arrives.

Redirects are followed (at most MAX_REDIRECTS), each hop's URL checked for its shape here and its
address by the proxy as it connects. The body is refused as soon as its declared length, or the
bytes received, pass the limit; a web page is reported as such, so the caller can hand it to
yt-dlp or explain that only direct links are imported.
"""

import email.message
import http.client
import os
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from urllib.parse import unquote, urlsplit

from jobs import addresses
from jobs.imports import failures
from jobs.imports.failures import Downloaded, ImportCanceled, ImportFailed
from jobs.imports.proxy import FetchProxy

CHUNK = 256 * 1024
MAX_REDIRECTS = 10
READ_TIMEOUT = 30.0
USER_AGENT = "Mozilla/5.0 (compatible; stemsite track import)"
# A page, or a stream's playlist: what yt-dlp reads (when sites are on), never a track by itself.
PAGE_TYPES = (
    "text/html", "application/xhtml+xml", "application/vnd.apple.mpegurl", "application/x-mpegurl",
    "audio/mpegurl", "audio/x-mpegurl", "application/dash+xml",
)  # fmt: skip
# Progress is reported as (bytes so far, bytes in all or 0); False back means stop (canceled).
Progress = Callable[[int, int], bool]


def download(url: str, folder: Path, proxy: FetchProxy, max_bytes: int, progress: Progress) -> Downloaded:
    """The file at `url` in `folder`; raises ImportFailed (WEB_PAGE for a page) or ImportCanceled."""
    opener = urllib.request.build_opener(
        urllib.request.ProxyHandler({"http": proxy.url, "https": proxy.url}), _CheckedRedirects()
    )
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT, "Accept": "audio/*, */*;q=0.5"})
    path = folder / "download"
    try:
        with opener.open(request, timeout=READ_TIMEOUT) as response:
            content_type = response.headers.get_content_type()
            if content_type in PAGE_TYPES:
                raise ImportFailed(failures.WEB_PAGE, content_type)
            total = _length(response.headers)
            if total > max_bytes:
                raise ImportFailed(failures.TOO_LARGE, f"{total} bytes declared")
            _save(response, path, total, max_bytes, progress)
            name = _filename(response.headers, response.geturl())
    except urllib.error.HTTPError as error:
        error.close()
        raise proxy_failure(proxy) or failure_for_status(error.code, proxy) from None
    except (ImportFailed, urllib.error.URLError, OSError, http.client.HTTPException) as error:
        raise proxy_failure(proxy) or failure_for_network(proxy, error) from None
    failure = proxy_failure(proxy)  # a cut connection can look like the end of a file of unknown length
    if failure is not None:
        raise failure
    return Downloaded(str(path), name)


def _save(response, path: Path, total: int, max_bytes: int, progress: Progress) -> None:
    received = 0
    last = 0.0
    with path.open("wb") as target:
        while chunk := response.read(CHUNK):
            received += len(chunk)
            if received > max_bytes:
                raise ImportFailed(failures.TOO_LARGE, f"over {max_bytes} bytes")
            target.write(chunk)
            now = time.monotonic()
            if now - last >= 0.2:
                last = now
                if not progress(received, total):
                    raise ImportCanceled
    if total and received < total:
        raise ImportFailed(failures.NETWORK, f"cut off at {received} of {total} bytes")


def proxy_failure(proxy: FetchProxy) -> ImportFailed | None:
    """What the proxy stopped, whatever the downloader made of it: a limit, or a refused address."""
    if proxy.over_budget:
        return ImportFailed(failures.TOO_LARGE, "the proxy's byte limit")
    if proxy.timed_out:
        return ImportFailed(failures.TIMEOUT)
    refused = proxy.refused_private
    if refused is not None:
        return _refusal_failure(refused)
    return None


def failure_for_status(status: int, proxy: FetchProxy) -> ImportFailed:
    """What an HTTP error answer means for an import."""
    if proxy.refusals:
        return ImportFailed(failures.NETWORK, f"{proxy.refusals[-1].host} did not answer")
    if status in (404, 410):
        return ImportFailed(failures.NOT_FOUND, f"HTTP {status}")
    if status in (401, 402, 403, 451):
        return ImportFailed(failures.REFUSED, f"HTTP {status}")
    return ImportFailed(failures.NETWORK, f"HTTP {status}")


def failure_for_network(proxy: FetchProxy, error: BaseException) -> ImportFailed:
    """What a failed connection means, once the proxy has nothing to say about it."""
    if isinstance(error, ImportFailed):
        return error
    reason = getattr(error, "reason", error)
    if isinstance(reason, ImportFailed):
        return reason
    if isinstance(reason, socket.timeout | TimeoutError):
        return ImportFailed(failures.NETWORK, "the site stopped answering")
    return ImportFailed(failures.NETWORK, str(reason))


def _refusal_failure(refusal) -> ImportFailed:
    if refusal.reason == addresses.PRIVATE:
        return ImportFailed(failures.PRIVATE, refusal.address or refusal.host)
    if refusal.reason == addresses.UNRESOLVABLE:
        return ImportFailed(failures.NETWORK, f"{refusal.host} cannot be resolved")
    return ImportFailed(failures.BAD_LINK, refusal.reason)


class _CheckedRedirects(urllib.request.HTTPRedirectHandler):
    """Each hop must have an allowed shape (the proxy checks its address when it connects)."""

    max_redirections = MAX_REDIRECTS

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        try:
            addresses.parse_url(newurl)
        except addresses.AddressRefused as refused:
            raise ImportFailed(failures.BAD_LINK, refused.reason) from None
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def _length(headers: email.message.Message) -> int:
    try:
        return max(0, int(headers.get("Content-Length", "0")))
    except ValueError:
        return 0


def _filename(headers: email.message.Message, url: str) -> str:
    """The name the site gives the file, else the last part of the URL's path, else its host."""
    given = headers.get_filename()
    if given:
        return os.path.basename(given.replace("\\", "/"))
    parts = urlsplit(url)
    last = PurePosixPath(unquote(parts.path)).name
    return last or parts.hostname or "track"
