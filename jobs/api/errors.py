"""Every API error in one shape: {"error": {"code", "message", "details"}}, with its status code.

Handlers are registered on the NinjaAPI, so ninja's own refusals (validation, authentication,
CSRF, unknown exceptions) are re-shaped here and nothing under /api/ answers with an HTML page.
"""

import logging

from django.core.exceptions import RequestDataTooBig, TooManyFilesSent
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from ninja.errors import AuthenticationError, HttpError
from ninja.errors import ValidationError as NinjaValidationError
from redis.exceptions import RedisError

from jobs.background.tasks import MSG_PROCESSING_PAUSED
from jobs.limits import LimitExceeded
from jobs.submission import UploadNotStored
from jobs.upload_limits import too_large_message, too_many_files_message

logger = logging.getLogger(__name__)

CODES = {
    400: "invalid",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "too_large",
    429: "rate_limited",
    500: "server_error",
    503: "unavailable",
    507: "storage_unavailable",
}
RETRY_AFTER_SECONDS = 30  # what a 503 suggests; the reconciler re-queues saved jobs well within it
MSG_UNAUTHORIZED = (
    "Authentication required: send a personal API token from your account page as "
    "'Authorization: Bearer <token>', or call from a logged-in browser session."
)
MSG_SERVER_ERROR = (
    "The request failed because of an error on the server. The site's staff can see the details."
)


class ApiError(Exception):
    """An error the endpoint can explain: raised anywhere below a view, answered in the shape."""

    def __init__(self, status: int, message: str, code: str = "", details=None):
        super().__init__(message)
        self.status, self.message, self.details = status, message, details
        self.code = code or CODES.get(status, "error")


def error_response(status: int, message: str, code: str = "", details=None) -> HttpResponse:
    body = {"error": {"code": code or CODES.get(status, "error"), "message": message, "details": details}}
    response = JsonResponse(body, status=status)
    if status == 503:
        response["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response


def validation_sentence(error: dict) -> str:
    """ninja's (pydantic's) error entry as a sentence naming the field."""
    where = [
        str(part) for part in error.get("loc", ()) if part not in ("body", "query", "path", "form", "file")
    ]
    field = ".".join(where) or "request"
    return f"{field}: {error.get('msg', 'invalid value')}."


def register(api) -> None:
    @api.exception_handler(ApiError)
    def api_error(request: HttpRequest, exc: ApiError) -> HttpResponse:
        return error_response(exc.status, exc.message, exc.code, exc.details)

    @api.exception_handler(NinjaValidationError)
    def invalid(request: HttpRequest, exc: NinjaValidationError) -> HttpResponse:
        sentences = [validation_sentence(error) for error in exc.errors]
        fields = [
            {"field": ".".join(str(p) for p in e.get("loc", ())), "message": e.get("msg", "")}
            for e in exc.errors
        ]
        return error_response(400, " ".join(sentences) or "The request is not valid.", details=fields)

    @api.exception_handler(AuthenticationError)
    def unauthorized(request: HttpRequest, exc: AuthenticationError) -> HttpResponse:
        response = error_response(401, MSG_UNAUTHORIZED)
        response["WWW-Authenticate"] = "Bearer"
        return response

    @api.exception_handler(HttpError)
    def http_error(request: HttpRequest, exc: HttpError) -> HttpResponse:
        message = str(exc)
        if exc.status_code == 403 and "CSRF" in message:
            message = "CSRF check failed: a browser session must send the X-CSRFToken header on this request."
            return error_response(403, message, code="csrf_failed")
        if exc.status_code == 400 and message.startswith("Cannot parse request body"):
            message = (
                "The request body could not be read: send JSON, or a multipart form where one is asked for."
            )
        return error_response(exc.status_code, message if message.endswith(".") else f"{message}.")

    @api.exception_handler(Http404)
    def not_found(request: HttpRequest, exc: Http404) -> HttpResponse:
        return error_response(404, str(exc) or "Not found.")

    @api.exception_handler(LimitExceeded)
    def rate_limited(request: HttpRequest, exc: LimitExceeded) -> HttpResponse:
        return error_response(429, str(exc))

    @api.exception_handler(UploadNotStored)
    def not_stored(request: HttpRequest, exc: UploadNotStored) -> HttpResponse:
        return error_response(503 if exc.unreachable else 507, str(exc), code="storage_unavailable")

    @api.exception_handler(RequestDataTooBig)
    def too_large(request: HttpRequest, exc: RequestDataTooBig) -> HttpResponse:
        return error_response(413, too_large_message())

    @api.exception_handler(TooManyFilesSent)
    def too_many_files(request: HttpRequest, exc: TooManyFilesSent) -> HttpResponse:
        return error_response(400, too_many_files_message(), code="too_many_files")

    @api.exception_handler(RedisError)
    def queue_down(request: HttpRequest, exc: RedisError) -> HttpResponse:
        logger.warning("API call to %s could not reach Redis: %s", request.path, exc)
        return error_response(503, MSG_PROCESSING_PAUSED, code="queue_unavailable")

    @api.exception_handler(Exception)
    def server_error(request: HttpRequest, exc: Exception) -> HttpResponse:
        logger.error("API call to %s failed", request.path, exc_info=exc)
        return error_response(500, MSG_SERVER_ERROR)


def api_not_found(request: HttpRequest, rest: str = "") -> HttpResponse:
    """Any other path under /api/: the API's 404, not the site's page."""
    return error_response(404, "There is no such API endpoint. See /api/docs for the endpoints.")
