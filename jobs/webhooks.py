"""Stand-in until the webhooks module arrives: only the callback URL check the API calls."""

from urllib.parse import urlsplit


def check_callback_url(url: str) -> None:
    """Raise ValueError with a sentence unless `url` is an http(s) URL with a host."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("The callback URL must be an http or https URL with a host name.")
