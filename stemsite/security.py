"""The Content-Security-Policy every page is sent with (django-csp), and what it allows.

Pages that people without an account can open (share links) make this matter: even if markup
from a track's name or a link got through escaping, a browser would run no script and load
nothing from anywhere else. Scripts and styles come from the site's own static files only: no
inline script, no style attributes, no eval (htmx's allowEval is off in base.html). Media and
connections go to the site, its websocket, and the S3 bucket when files live in one (the player
fetches stems from presigned bucket URLs). `'wasm-unsafe-eval'` lets the player compile
WebAssembly (the time-stretch library of the practice controls runs in an AudioWorklet); it
allows no JavaScript eval.
"""

from urllib.parse import urlsplit

from csp.constants import NONE, SELF, WASM_UNSAFE_EVAL
from csp.middleware import CSPMiddleware, PolicyParts
from django.core.exceptions import DisallowedHost


def content_security_policy(extra_origins: list[str]) -> dict:
    """django-csp's setting: the site itself, plus `extra_origins` (the bucket) for media and fetches."""
    return {
        "DIRECTIVES": {
            "default-src": [SELF],
            "script-src": [SELF, WASM_UNSAFE_EVAL],
            "style-src": [SELF],
            "img-src": [SELF, "data:"],
            "font-src": [SELF],
            "media-src": [SELF, *extra_origins],
            "connect-src": [SELF, *extra_origins],
            "worker-src": [SELF],
            "object-src": [NONE],
            "base-uri": [SELF],
            "form-action": [SELF],
            "frame-ancestors": [NONE],
        }
    }


def bucket_origins(storage: dict) -> list[str]:
    """The origins a presigned URL of the configured S3 bucket can have; none for local files."""
    options = storage.get("OPTIONS", {})
    bucket = options.get("bucket_name")
    if not bucket:
        return []
    endpoint = options.get("endpoint_url")
    style = options.get("addressing_style") or "auto"
    if endpoint:
        parts = urlsplit(endpoint)
        origin = f"{parts.scheme}://{parts.netloc}"
        virtual = f"{parts.scheme}://{bucket}.{parts.netloc}"
        return {"path": [origin], "virtual": [virtual]}.get(style, [origin, virtual])
    region = options.get("region_name")
    origins = [f"https://{bucket}.s3.amazonaws.com"]
    if region:
        origins += [f"https://{bucket}.s3.{region}.amazonaws.com", f"https://s3.{region}.amazonaws.com"]
    return origins


# The queue dashboard (django-rq, superusers only) styles its pages with inline <style> elements and
# attributes; they run no code, so that one dashboard may keep them. Its inline scripts are moved to
# a static file (templates/django_rq/), so scripts stay strict there too.
INLINE_STYLES_ALLOWED_UNDER = "/admin/django_rq/"


class ContentSecurityPolicy(CSPMiddleware):
    """django-csp's middleware, with the page's own websocket origin added to connect-src.

    `'self'` covers ws: and wss: only in browsers that follow CSP level 3; the origin is named
    as the request reached the site (behind a proxy, its Host and X-Forwarded-Proto).
    """

    def get_policy_parts(self, request, response, report_only: bool = False) -> PolicyParts:
        parts = super().get_policy_parts(request, response, report_only)
        if report_only:
            return parts
        try:
            host = request.get_host()
        except DisallowedHost:  # answered 400 already; its page opens no socket
            return parts
        scheme = "wss" if request.is_secure() else "ws"
        update = dict(parts.update or {})
        update["connect-src"] = [*update.get("connect-src", []), f"{scheme}://{host}"]
        if request.path.startswith(INLINE_STYLES_ALLOWED_UNDER):
            update["style-src"] = ["'unsafe-inline'"]
        parts.update = update
        return parts
