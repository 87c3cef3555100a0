"""The address a request came from, trusting only as many proxies as the operator declared."""

from django.conf import settings
from django.http import HttpRequest


def client_address(request: HttpRequest) -> str:
    """REMOTE_ADDR, or the address the outermost trusted proxy saw, from X-Forwarded-For.

    Each trusted proxy appends the address it received the request from, so with N proxies the
    Nth entry from the right is the client; anything further left was written by the client and
    could be forged. A header shorter than N (a misconfigured proxy) falls back to its first entry.
    """
    proxies = settings.STEMSITE_TRUSTED_PROXIES
    remote = request.META.get("REMOTE_ADDR", "")
    if proxies == 0:
        return remote
    forwarded = [part.strip() for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")]
    forwarded = [part for part in forwarded if part]
    if not forwarded:
        return remote
    return forwarded[-proxies] if len(forwarded) >= proxies else forwarded[0]
