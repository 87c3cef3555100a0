"""Template context every page gets: whether processing is paused because Redis is unreachable."""

import time

import redis
from django.conf import settings
from django.http import HttpRequest


def queue_status(request: HttpRequest) -> dict:
    """`queue_down` is True while Redis does not answer; pages then show a banner instead of a 500."""
    return {"queue_down": not _queue_check.reachable()}


class _QueueCheck:
    """A Redis ping with a short timeout, asked at most once per STEMSITE_QUEUE_CHECK_SECONDS."""

    def __init__(self):
        self.url = None
        self.client = None
        self.checked_at = float("-inf")
        self.up = True

    def reachable(self) -> bool:
        if self.url != settings.REDIS_URL:
            # The client first: another thread that sees the new URL must find its client too.
            url = settings.REDIS_URL
            self.client = redis.Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=0.5)
            self.checked_at = float("-inf")
            self.url = url
        now = time.monotonic()
        if now - self.checked_at >= settings.STEMSITE_QUEUE_CHECK_SECONDS:
            try:
                self.up = bool(self.client.ping())
            except (redis.RedisError, OSError):
                self.up = False
            self.checked_at = now
        return self.up


_queue_check = _QueueCheck()
