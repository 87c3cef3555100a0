"""The JSON API at /api/: one NinjaAPI, token or session auth, errors in one shape, docs served locally."""

from ninja import NinjaAPI

from jobs.api import errors
from jobs.api.auth import session_auth, token_auth
from jobs.api.jobs import router as jobs_router
from jobs.api.shares import router as shares_router

DESCRIPTION = """
Everything the site does in the browser, for scripts.

**Auth**: a personal token from your account page as `Authorization: Bearer <token>`; or a logged-in
browser session, which must send `X-CSRFToken` on POST and DELETE.

**Errors** are always `{"error": {"code": "...", "message": "a sentence", "details": ...}}` with
status 400, 401, 403 (CSRF), 404, 409, 413, 429, 500 or 503.

**States**: `status` is the site's own (queued, running, succeeded, failed, canceled); `state` gives
the same in the original backend's lifecycle (pending, processing, completed, failed, canceled).

**Health**: `GET /api/health` (no auth) reports the database, Redis, workers and queue depth;
200 when all are usable, 503 otherwise. It is a plain view, not listed below.
"""

api = NinjaAPI(
    title="stemsite API",
    version="1",
    description=DESCRIPTION,
    urls_namespace="api",
    auth=[token_auth, session_auth],
    docs_url="/docs",
)
errors.register(api)
api.add_router("/", jobs_router)
api.add_router("/", shares_router)
