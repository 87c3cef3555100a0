"""Personal API tokens: made once, stored as a SHA-256 hash, looked up by that hash."""

import hashlib
import secrets
from datetime import timedelta

from django.utils import timezone

from jobs.models import ApiToken

TOKEN_PREFIX = "stm_"
PREFIX_LENGTH = 10  # "stm_" and six characters: enough to tell a user's tokens apart
LAST_USED_RESOLUTION = timedelta(minutes=1)


def token_hash(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def create_token(user, name: str) -> tuple[ApiToken, str]:
    """A new token for `user`; the raw value is returned here and never stored or shown again."""
    raw = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken.objects.create(
        user=user, name=name, prefix=raw[:PREFIX_LENGTH], token_hash=token_hash(raw)
    )
    return token, raw


def user_for_token(raw: str):
    """The active user owning this unrevoked token, or None; notes its use at most once a minute."""
    token = (
        ApiToken.objects.select_related("user")
        .filter(token_hash=token_hash(raw), revoked_at__isnull=True, user__is_active=True)
        .first()
    )
    if token is None:
        return None
    now = timezone.now()
    if token.last_used_at is None or now - token.last_used_at >= LAST_USED_RESOLUTION:
        # One conditional update: many calls in the same minute write the row once.
        stale = ApiToken.objects.filter(pk=token.pk).exclude(last_used_at__gt=now - LAST_USED_RESOLUTION)
        stale.update(last_used_at=now)
    return token.user


def revoke_token(user, token_id) -> bool:
    """Revoke one of the user's own tokens; False if they have no such active token."""
    return bool(
        ApiToken.objects.filter(user=user, pk=token_id, revoked_at__isnull=True).update(
            revoked_at=timezone.now()
        )
    )
