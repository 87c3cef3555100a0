"""Share links over the API: make, list and revoke the links of one of your finished jobs.

The same functions as the job page (jobs/sharing/links.py); others' jobs are 404 here too. A
link's URL is in the answer that makes it and never again: only its hash is stored.
"""

import json
from uuid import UUID

from django.http import HttpRequest
from django.urls import reverse
from ninja import Router, Status
from pydantic import ValidationError as PydanticValidationError

from jobs.api.errors import ApiError, validation_sentence
from jobs.api.jobs import ERRORS, _get_job
from jobs.api.schemas import ErrorOut, ShareIn, ShareOut, share_out
from jobs.sharing.links import NotShareable, create_link, revoke_link

router = Router(tags=["share links"])
FORM_TYPES = ("multipart/form-data", "application/x-www-form-urlencoded")


@router.post(
    "/jobs/{uuid:job_id}/shares",
    response={201: ShareOut, **ERRORS, 409: ErrorOut},
    summary="Make a share link",
    openapi_extra={
        "requestBody": {
            "content": {"application/json": {"schema": ShareIn.model_json_schema()}},
            "required": False,
        }
    },
)
def create_share(request: HttpRequest, job_id: UUID):
    """A link that opens the job's player for anyone who has it (no account). `url` is in this answer
    only. 409 until the job has succeeded."""
    job = _owned_job(request, job_id)
    choices = _share_choices(request)
    try:
        link, raw = create_link(job, choices.expires, choices.allow_downloads, choices.show_owner)
    except NotShareable as error:
        raise ApiError(409, str(error)) from None
    url = request.build_absolute_uri(reverse("share_page", args=[raw]))
    return Status(201, share_out(link, url))


@router.get(
    "/jobs/{uuid:job_id}/shares", response={200: list[ShareOut], **ERRORS}, summary="A job's share links"
)
def list_shares(request: HttpRequest, job_id: UUID):
    """Every link made for the job, newest first, revoked and expired ones too (their `active` is false)."""
    job = _get_job(request, job_id)
    return [share_out(link) for link in job.share_links.all()]


@router.get(
    "/jobs/{uuid:job_id}/shares/{int:share}", response={200: ShareOut, **ERRORS}, summary="A share link"
)
def get_share(request: HttpRequest, job_id: UUID, share: int):
    """One link of the job: whether it opens, until when, how often it was opened."""
    link = _get_job(request, job_id).share_links.filter(pk=share).first()
    if link is None:
        raise ApiError(404, "This job has no such share link.")
    return share_out(link)


@router.delete(
    "/jobs/{uuid:job_id}/shares/{int:share}",
    response={204: None, **ERRORS},
    summary="Revoke a share link",
)
def revoke_share(request: HttpRequest, job_id: UUID, share: int):
    """From now on the link opens a plain 404 page. 404 if the job has no such unrevoked link."""
    job = _get_job(request, job_id)
    if not revoke_link(job, share):
        raise ApiError(404, "This job has no such share link, or it was revoked already.")
    return Status(204, None)


def _owned_job(request: HttpRequest, job_id: UUID):
    """Only the owner shares a job: for anyone else (staff too) it does not exist here."""
    job = _get_job(request, job_id)
    if job.owner_id != request.auth.pk:
        raise ApiError(404, "No such job.")
    return job


def _share_choices(request: HttpRequest) -> ShareIn:
    """The JSON body's choices; no body (or an empty form) takes the defaults."""
    if request.content_type != "application/json":
        sent = (request.POST or request.FILES) if request.content_type in FORM_TYPES else request.body
        if sent:
            raise ApiError(400, "Send the share link's choices as JSON (Content-Type: application/json).")
        return ShareIn()
    if not request.body:
        return ShareIn()
    try:
        return ShareIn.model_validate(json.loads(request.body))
    except json.JSONDecodeError:
        raise ApiError(400, "The request body is not valid JSON.") from None
    except PydanticValidationError as error:
        problems = error.errors(include_url=False)
        fields = [{"field": ".".join(str(p) for p in e["loc"]), "message": e["msg"]} for e in problems]
        raise ApiError(400, " ".join(validation_sentence(e) for e in problems), details=fields) from None
