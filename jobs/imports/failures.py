"""Why a download failed, as a kind the site words for people (jobs/background/imports.py)."""

from dataclasses import dataclass

NOT_FOUND = "not_found"  # the site answered 404 or 410
NOT_AUDIO = "not_audio"  # nothing at the link is audio
WEB_PAGE = "web_page"  # a web page, where only direct links to audio files are imported
UNSUPPORTED = "unsupported"  # a page of a site yt-dlp does not know, with no audio on it
PRIVATE = "private"  # the link, a redirect or a manifest led to a private address
BAD_LINK = "bad_link"  # a redirect to a URL the rule refuses outright (not http(s), credentials)
TOO_LONG = "too_long"  # the site says the track is longer than the site's limit
TOO_LARGE = "too_large"  # more bytes than the upload limit
REFUSED = "refused"  # the site refused: a login, an age check, a region, a subscription
NETWORK = "network"  # no answer: the network is down, the site is down, the name is unknown
TIMEOUT = "timeout"  # the download ran past its time limit
PLAYLIST = "playlist"  # a playlist or a channel, not one track
LIVE = "live"  # a live stream


class ImportFailed(Exception):
    """A download that cannot give a track; `kind` is one of the constants above."""

    def __init__(self, kind: str, detail: str = "", seconds: float = 0.0):
        super().__init__(f"{kind}: {detail}" if detail else kind)
        self.kind, self.detail, self.seconds = kind, detail, seconds


class ImportCanceled(Exception):
    """The owner canceled the import while it downloaded."""


@dataclass(frozen=True)
class Downloaded:
    """The downloaded file, and the name the track is shown with."""

    path: str
    name: str
