"""Share link tokens: made once, stored as a SHA-256 hash, compared in constant time, guarded
against guessing per client address (a Redis counter shared by every web process).

A token is 32 random bytes (256 bits): guessing one is hopeless, and an address that keeps
trying unknown, revoked or expired links is refused for a while anyway, so a scan of the link
space also costs nothing but 429s.
"""

import hashlib
import hmac
import logging
import secrets
from datetime import timedelta

import django_rq
from django.conf import settings
from django.utils import timezone
from redis.exceptions import RedisError

from jobs.models import Job, ShareLink

logger = logging.getLogger(__name__)

TOKEN_BYTES = 32
TOKEN_LENGTH = 43  # what secrets.token_urlsafe(32) gives
TOKEN_CHARACTERS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
# How long a link opens for, by the owner's choice.
EXPIRIES = {"day": timedelta(days=1), "week": timedelta(days=7), "never": None}
EXPIRY_LABELS = {"day": "A day", "week": "A week", "never": "Until I revoke it"}


class NotShareable(Exception):
    """Only a finished separation (with its stems) can be shared."""


def token_hash(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def create_link(job: Job, expires: str, allow_downloads: bool, show_owner: bool) -> tuple[ShareLink, str]:
    """A new link to `job`; the raw token is returned here and never stored or shown again."""
    if job.status != Job.Status.SUCCEEDED or job.duplicate_of_id:
        raise NotShareable("Only a finished separation can be shared: this track has no stems yet.")
    raw = secrets.token_urlsafe(TOKEN_BYTES)
    lifetime = EXPIRIES[expires]
    link = ShareLink.objects.create(
        job=job,
        token_hash=token_hash(raw),
        allow_downloads=allow_downloads,
        show_owner=show_owner,
        expires_at=timezone.now() + lifetime if lifetime else None,
    )
    return link, raw


def find_link(raw: str) -> ShareLink | None:
    """The active link with this token to a finished job, or None (unknown, revoked or expired)."""
    if len(raw) != TOKEN_LENGTH or not set(raw) <= TOKEN_CHARACTERS:
        return None
    wanted = token_hash(raw)
    link = (
        ShareLink.objects.active()
        .select_related("job", "job__owner")
        .filter(token_hash=wanted, job__status=Job.Status.SUCCEEDED)
        .first()
    )
    if link is None or not hmac.compare_digest(link.token_hash, wanted):
        return None
    return link


def revoke_link(job: Job, link_id: int) -> bool:
    """Revoke one of the job's links; False if it has no such unrevoked link."""
    link = job.share_links.filter(pk=link_id).first()
    return link is not None and link.revoke()


def _miss_key(address: str) -> str:
    return f"stemsite:share-misses:{address}"


def guessing_blocked(address: str) -> bool:
    """Whether this address has opened too many unknown, revoked or expired links lately."""
    try:
        misses = django_rq.get_connection(settings.STEMSITE_QUEUE).get(_miss_key(address))
    except (RedisError, OSError) as error:
        logger.warning("Share links: the guessing counter cannot be read: %s", error)
        return False
    return int(misses or 0) >= settings.STEMSITE_SHARE_GUESSES_PER_ADDRESS


def count_miss(address: str) -> None:
    """One more link this address asked for that does not open; the count ends with its window."""
    try:
        pipe = django_rq.get_connection(settings.STEMSITE_QUEUE).pipeline()
        # The window starts with the first miss; INCR keeps the key's expiry.
        pipe.set(_miss_key(address), 0, ex=settings.STEMSITE_SHARE_GUESS_WINDOW_SECONDS, nx=True)
        pipe.incr(_miss_key(address))
        pipe.execute()
    except (RedisError, OSError) as error:
        logger.warning("Share links: the guessing counter cannot be written: %s", error)
