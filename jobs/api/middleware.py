"""The last line for "never an HTML page under /api/": any error answer there that is not JSON
(ninja's 405, a Django-level 400 or 500) is re-written in the API's error shape."""

from django.http import HttpRequest, HttpResponse

from jobs.api.errors import CODES, error_response

SENTENCES = {
    400: "The request could not be understood.",
    403: "This request is not allowed.",
    404: "There is no such API endpoint. See /api/docs for the endpoints.",
    500: "The request failed because of an error on the server. The site's staff can see the details.",
}


class ApiJsonErrors:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if (
            not request.path.startswith("/api/")
            or response.status_code < 400
            or response.get("Content-Type", "").startswith("application/json")
        ):
            return response
        status = response.status_code
        if status == 405:
            allowed = ", ".join(sorted(m.strip() for m in response.get("Allow", "").split(",") if m.strip()))
            json_response = error_response(
                405,
                f"This endpoint does not take {request.method}; it takes {allowed}.",
                details={"allow": allowed},
            )
            json_response["Allow"] = allowed
            return json_response
        return error_response(
            status, SENTENCES.get(status, f"The request failed ({status})."), CODES.get(status, "")
        )
