"""Views for machines watching the site: GET /api/health and GET /metrics."""

import hmac

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST

from jobs.health import check_health
from jobs.metrics import render_metrics


@never_cache
@require_GET
def health(request: HttpRequest) -> JsonResponse:
    """200 only when the database, Redis and at least one worker are usable; else 503 saying what is not."""
    result = check_health()
    return JsonResponse(result.as_dict(), status=200 if result.ok else 503)


@never_cache
@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    """Prometheus text for staff sessions or `Authorization: Bearer <STEMSITE_METRICS_TOKEN>`.

    401 without credentials (or with a wrong token), 403 for a signed-in user who is not staff.
    """
    if not _may_scrape(request):
        if request.user.is_authenticated:
            return _error(403, "forbidden", "Metrics are for staff or the configured metrics token.")
        response = _error(401, "unauthorized", "Send the metrics token as `Authorization: Bearer <token>`.")
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    return HttpResponse(render_metrics(), content_type=CONTENT_TYPE_LATEST)


def _may_scrape(request: HttpRequest) -> bool:
    token = settings.STEMSITE_METRICS_TOKEN
    scheme, _, offered = request.headers.get("Authorization", "").partition(" ")
    if token and scheme.lower() == "bearer" and hmac.compare_digest(offered.strip().encode(), token.encode()):
        return True
    return request.user.is_authenticated and request.user.is_staff


def _error(status: int, code: str, message: str) -> JsonResponse:
    return JsonResponse({"error": {"code": code, "message": message}}, status=status)
