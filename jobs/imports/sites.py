"""Pages of sites: yt-dlp finds the track's audio on the page and downloads it, through the proxy.

yt-dlp is configured so that nothing leaves the proxy and nothing runs that could read anything
but the download: every request goes through the import proxy (which applies the address rule
to each connection), HLS and DASH use yt-dlp's own downloaders (never ffmpeg, which is also
not given to it at all), no postprocessing, no playlists, no file: URLs, no cache, no cookies.
A video, or MPEG-TS from a stream, has its audio copied out with the site's own fenced ffmpeg run on
the local file (jobs/engine/audio.extract_audio) before the upload checks see it.
"""

import logging
import re
import time
from pathlib import Path

from jobs.engine import audio
from jobs.imports import failures
from jobs.imports.failures import Downloaded, ImportCanceled, ImportFailed
from jobs.imports.fetch import READ_TIMEOUT, Progress, proxy_failure
from jobs.imports.proxy import FetchProxy

logger = logging.getLogger(__name__)

# Protocols whose downloads yt-dlp makes itself, over HTTP(S): the proxy sees every request.
NATIVE_PROTOCOLS = ("http", "https", "m3u8_native", "m3u8", "http_dash_segments")
FORMAT = "bestaudio/best"
LEFTOVER_SUFFIXES = (".part", ".ytdl", ".frag", ".temp")
# What yt-dlp says when a site refuses: a login, an age check, a region, a subscription.
REFUSAL = re.compile(
    r"sign in|log ?in|\bage\b|age[- ]restrict|private video|members[- ]only|premium|subscri|"
    r"not available in your country|geo[- ]?restrict|confirm you|http error 40[123]|forbidden"
)


class _Stop(Exception):
    """Raised from yt-dlp's progress hook to end a download; carries our own failure."""

    def __init__(self, failure: BaseException):
        super().__init__(str(failure))
        self.failure = failure


def is_site_page(url: str) -> bool:
    """Whether one of yt-dlp's site extractors (not its generic one) claims the URL; no network."""
    from yt_dlp.extractor import gen_extractor_classes

    return any(ie.suitable(url) for ie in gen_extractor_classes() if ie.ie_key() != "Generic")


def download(
    url: str,
    folder: Path,
    proxy: FetchProxy,
    max_bytes: int,
    max_seconds: float,
    progress: Progress,
    check_seconds: float = 120,
) -> Downloaded:
    """The track's audio at `url`, in `folder`; raises ImportFailed or ImportCanceled."""
    import yt_dlp

    hook = _Hook(max_bytes, progress)
    options = _options(folder, proxy, hook)
    try:
        with yt_dlp.YoutubeDL(options) as ydl:
            info = ydl.extract_info(url, download=False)
            _check_info(info, max_bytes, max_seconds)
            ydl.process_ie_result(info, download=True)
    except _Stop as stop:
        raise stop.failure from None
    except yt_dlp.utils.YoutubeDLError as error:
        cause = _cause(error)
        if isinstance(cause, _Stop):
            raise cause.failure from None
        raise proxy_failure(proxy) or _failure(error, cause) from None
    failure = proxy_failure(proxy)
    if failure is not None:
        raise failure
    path = _downloaded_file(folder)
    title = info.get("title") or info.get("id") or "track"
    return _audio_only(Downloaded(str(path), f"{title}{path.suffix}"), folder, check_seconds)


def _audio_only(downloaded: Downloaded, folder: Path, seconds: float) -> Downloaded:
    """The download as it came when it is plain audio; else its audio stream copied into a file of
    its own (what sites serve: a video with its sound, or MPEG-TS from HLS), read from local disk."""
    try:
        audio.sniff_family(downloaded.path)
        audio.probe(downloaded.path)
    except audio.AudioError:
        target = folder / "audio.webm"
        try:
            audio.extract_audio(downloaded.path, str(target), timeout=seconds)
        except audio.AudioError:
            return downloaded  # the upload checks then say why it is refused
        stem = downloaded.name.rpartition(".")[0] or downloaded.name
        return Downloaded(str(target), f"{stem}.webm")
    return downloaded


def _options(folder: Path, proxy: FetchProxy, hook: "_Hook") -> dict:
    no_ffmpeg = folder / "no-ffmpeg"  # an empty folder: yt-dlp finds no ffmpeg to run
    no_ffmpeg.mkdir(exist_ok=True)
    return {
        "proxy": proxy.url,
        "format": FORMAT,
        "format_sort": ["proto:https"],
        "noplaylist": True,
        "extract_flat": "in_playlist",
        "enable_file_urls": False,
        "external_downloader": {"default": "native"},
        "hls_prefer_native": True,
        "fixup": "never",
        "postprocessors": [],
        "ffmpeg_location": str(no_ffmpeg),
        "paths": {"home": str(folder), "temp": str(folder)},
        "outtmpl": {"default": "media.%(ext)s"},
        "restrictfilenames": True,
        "overwrites": True,
        "cachedir": False,
        "cookiefile": None,
        "socket_timeout": READ_TIMEOUT,
        "retries": 1,
        "fragment_retries": 1,
        "extractor_retries": 1,
        "progress_hooks": [hook],
        "logger": _Logger(),
        "quiet": True,
        "no_warnings": False,
        "noprogress": True,
        "color": "no_color",
        "warn_when_outdated": False,
        "check_formats": False,
    }


def _check_info(info: dict, max_bytes: int, max_seconds: float) -> None:
    """Refuse before any audio is fetched: a playlist, a live stream, too long or too large a track."""
    kind = info.get("_type", "video")
    if kind in ("playlist", "multi_video"):
        raise ImportFailed(failures.PLAYLIST)
    if info.get("is_live") or info.get("live_status") in ("is_live", "is_upcoming"):
        raise ImportFailed(failures.LIVE)
    duration = info.get("duration") or 0
    if duration > max_seconds:
        raise ImportFailed(failures.TOO_LONG, seconds=float(duration))
    size = info.get("filesize") or info.get("filesize_approx") or 0
    if size > max_bytes:
        raise ImportFailed(failures.TOO_LARGE, f"{size} bytes announced")
    chosen = info.get("requested_formats") or [info]
    for chosen_format in chosen:
        protocol = chosen_format.get("protocol") or ""
        if any(part not in NATIVE_PROTOCOLS for part in protocol.split("+")):
            raise ImportFailed(failures.UNSUPPORTED, f"protocol {protocol}")


class _Hook:
    """yt-dlp's progress hook: passes progress on, and stops a download past the size limit."""

    def __init__(self, max_bytes: int, progress: Progress):
        self.max_bytes = max_bytes
        self.progress = progress
        self.last = 0.0

    def __call__(self, status: dict) -> None:
        if status.get("status") != "downloading":
            return
        received = status.get("downloaded_bytes") or 0
        total = status.get("total_bytes") or status.get("total_bytes_estimate") or 0
        if received > self.max_bytes or (status.get("total_bytes") or 0) > self.max_bytes:
            raise _Stop(ImportFailed(failures.TOO_LARGE, f"{max(received, total)} bytes"))
        now = time.monotonic()
        if now - self.last >= 0.2:
            self.last = now
            if not self.progress(int(received), int(total)):
                raise _Stop(ImportCanceled())


class _Logger:
    """yt-dlp's messages go to the worker's log."""

    def debug(self, message: str) -> None:
        logger.debug("yt-dlp: %s", message)

    def info(self, message: str) -> None:
        logger.debug("yt-dlp: %s", message)

    def warning(self, message: str) -> None:
        logger.info("yt-dlp: %s", message)

    def error(self, message: str) -> None:
        logger.info("yt-dlp: %s", message)


def _cause(error: BaseException) -> BaseException | None:
    """The exception underneath yt-dlp's wrappers (DownloadError keeps it in exc_info)."""
    seen = error
    for _ in range(5):
        inner = getattr(seen, "exc_info", None)
        inner = inner[1] if inner else None
        inner = inner or seen.__cause__ or seen.__context__ or getattr(seen, "orig_msg", None)
        if not isinstance(inner, BaseException) or inner is seen:
            break
        seen = inner
    return seen if seen is not error else None


def _failure(error: BaseException, cause: BaseException | None) -> ImportFailed:
    """yt-dlp's error, as a kind of failure."""
    from yt_dlp.networking.exceptions import HTTPError, TransportError
    from yt_dlp.utils import UnsupportedError

    message = str(error).lower()
    if isinstance(cause, HTTPError) or "http error" in message:
        status = cause.status if isinstance(cause, HTTPError) else 0
        if status in (404, 410) or "http error 404" in message or "http error 410" in message:
            return ImportFailed(failures.NOT_FOUND, str(error))
    if isinstance(cause, UnsupportedError) or "unsupported url" in message:
        return ImportFailed(failures.UNSUPPORTED, str(error))
    if "requested format is not available" in message or "no video formats found" in message:
        return ImportFailed(failures.NOT_AUDIO, str(error))
    if REFUSAL.search(message):
        return ImportFailed(failures.REFUSED, str(error))
    if isinstance(cause, TransportError | OSError) or "unable to download" in message:
        return ImportFailed(failures.NETWORK, str(error))
    return ImportFailed(failures.NOT_AUDIO, str(error))


def _downloaded_file(folder: Path) -> Path:
    found = [
        path for path in folder.iterdir()
        if path.is_file() and path.name.startswith("media.") and path.suffix not in LEFTOVER_SUFFIXES
    ]  # fmt: skip
    if len(found) != 1:
        raise ImportFailed(failures.NOT_AUDIO, f"{len(found)} files downloaded")
    return found[0]
