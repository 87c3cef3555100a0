"""The job endpoints: the same functions the pages call, answered as JSON.

Others' jobs do not exist here either: every lookup goes through `_get_job`, which answers 404
for a job the caller may not see (staff see all).
"""

import json
from uuid import UUID

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.urls import reverse
from ninja import File, Form, Query, Router, Status
from ninja.files import UploadedFile
from pydantic import ValidationError as PydanticValidationError

from jobs.api.errors import ApiError, validation_sentence
from jobs.api.schemas import (
    ErrorOut,
    ExportIn,
    ExportOut,
    JobOut,
    JobPage,
    ModelsOut,
    StemOut,
    export_out,
    job_out,
    models_out,
)
from jobs.background.exports import request_export
from jobs.background.tasks import MSG_PROCESSING_PAUSED
from jobs.capabilities import site_capabilities
from jobs.control import cancel_job, retry_job
from jobs.downloads import stored_file_response
from jobs.forms import MSG_IMPORT_OFF, MixExportForm, UploadForm
from jobs.models import IdenticalJobActive, Job, MixExport
from jobs.submission import submit_import, submit_within_limits
from jobs.views import MSG_NO_STEMS_TO_MIX
from jobs.webhooks import check_callback_url

router = Router(tags=["jobs"])

ERRORS = {code: ErrorOut for code in (400, 401, 404)}
MAX_PAGE_SIZE = 100


def _user(request: HttpRequest):
    return request.auth


def _get_job(request: HttpRequest, job_id: UUID) -> Job:
    """The job if the caller may see it (owner or staff); otherwise 404, as for a job that does not exist.
    An import that turned out to be a job the owner had already is that job."""
    job = Job.objects.for_user(_user(request)).select_related("duplicate_of").filter(pk=job_id).first()
    if job is None:
        raise ApiError(404, "No such job.")
    return job.duplicate_of or job


@router.get("/models", response={200: ModelsOut, 401: ErrorOut}, summary="Models and precisions on offer")
def models(request: HttpRequest):
    """The models the site's separation workers can load and the precisions their hardware runs,
    with the defaults an upload gets; `unavailable` is a sentence when no model can run at all."""
    return models_out(site_capabilities())


@router.post(
    "/jobs",
    response={
        201: JobOut,
        200: JobOut,
        400: ErrorOut,
        401: ErrorOut,
        413: ErrorOut,
        429: ErrorOut,
        503: ErrorOut,
        507: ErrorOut,
    },
    summary="Upload a track, or import one from a link, and queue its separation",
)
def create_job(
    request: HttpRequest,
    file: File[UploadedFile] = None,
    url: Form[str] = "",
    model: Form[str] = "",
    two_stems: Form[str] = "",
    quality: Form[str] = "",
    output_format: Form[str] = "",
    mp3_bitrate: Form[str] = "",
    precision: Form[str] = "",
    callback_url: Form[str] = "",
):
    """Multipart form: `file` and the upload form's options, validated exactly as the page does; or,
    instead of `file`, `url`: a link to import the track from (when the site allows imports).

    201 with the new job; 200 with the existing job when the same audio (or the same link) with the
    same options was already separated or is on its way; 503 (the job in `details.job`) when the
    queue is down: the job is saved and starts by itself once processing resumes, so do not send it
    again. 503 with code `model_unavailable` when the workers cannot load any model: nothing is saved.

    An import answers at once with status `downloading`; the download then goes through the same
    checks as an upload. When its audio turns out to be a job you already have with these options,
    GET on its id answers with that job (a different `id`).
    """
    user = _user(request)
    data = {"model": model, "two_stems": two_stems, "quality": quality, "output_format": output_format}
    data["url"] = url
    data.update(mp3_bitrate=mp3_bitrate, precision=precision)
    files = request.FILES.getlist("file")
    if len(files) > 1:
        raise ApiError(400, "Send one file per request, in the field 'file'.")
    if url.strip() and settings.STEMSITE_URL_IMPORT == "off":
        raise ApiError(400, MSG_IMPORT_OFF, details={"url": MSG_IMPORT_OFF})
    capabilities = site_capabilities()
    if capabilities.unavailable:
        raise ApiError(503, f"{capabilities.unavailable} Nothing was saved.", code="model_unavailable")
    form = UploadForm(data, {"files": files}, capabilities=capabilities)
    if not form.is_valid():
        raise ApiError(400, " ".join(form_sentences(form)), details=form.errors.get_json_data())
    callback_url = callback_url.strip()
    if callback_url:
        try:
            check_callback_url(callback_url)
        except ValueError as error:
            raise ApiError(400, str(error), details={"callback_url": str(error)}) from None
    if form.import_url:
        submission = submit_import(user, form.import_url, form.job_options, callback_url=callback_url)
    else:
        [submission] = submit_within_limits(user, form.accepted, form.job_options, callback_url=callback_url)
    job = submission.job
    if submission.paused:
        raise ApiError(
            503, MSG_PROCESSING_PAUSED, code="queue_unavailable", details={"job": job_out(request, job)}
        )
    return Status(200 if submission.reused else 201, job_out(request, job))


def form_sentences(form) -> list[str]:
    """The form's sentences; an option's are prefixed with its field name (the page shows them beside it)."""
    return [
        message if field in ("files", "url", "__all__") else f"{field}: {message}"
        for field, messages in form.errors.items()
        for message in messages
    ]


@router.get("/jobs", response={200: JobPage, 400: ErrorOut, 401: ErrorOut}, summary="List your jobs")
def list_jobs(
    request: HttpRequest,
    status: Query[Job.Status | None] = None,
    page: Query[int] = 1,
    page_size: Query[int] = 20,
):
    """Newest first, the caller's own jobs (staff too: the site's job list is per user)."""
    if page < 1 or not 1 <= page_size <= MAX_PAGE_SIZE:
        raise ApiError(400, f"page must be 1 or more and page_size from 1 to {MAX_PAGE_SIZE}.")
    jobs = Job.objects.listed().filter(owner=_user(request))
    if status:
        jobs = jobs.filter(status=status)
    count = jobs.count()
    start = (page - 1) * page_size
    items = [job_out(request, job) for job in jobs[start : start + page_size]]
    pages = max(1, -(-count // page_size))
    return {"items": items, "count": count, "page": page, "pages": pages, "page_size": page_size}


@router.get("/jobs/{uuid:job_id}", response={200: JobOut, **ERRORS}, summary="A job's status")
def get_job(request: HttpRequest, job_id: UUID):
    return job_out(request, _get_job(request, job_id))


@router.delete(
    "/jobs/{uuid:job_id}",
    response={204: None, 401: ErrorOut, 404: ErrorOut, 409: ErrorOut},
    summary="Delete a finished job and all its files",
)
def delete_job(request: HttpRequest, job_id: UUID):
    """The job and every file of it (upload, stems, mixes); a job still queued or running is refused."""
    job = _get_job(request, job_id)
    if not job.is_finished:
        raise ApiError(
            409, "This track is still being processed; cancel it or delete it once it has finished."
        )
    job.delete_with_files()
    return Status(204, None)


@router.post(
    "/jobs/{uuid:job_id}/cancel",
    response={200: JobOut, 401: ErrorOut, 404: ErrorOut, 409: ErrorOut},
    summary="Cancel a queued or running job",
)
def cancel(request: HttpRequest, job_id: UUID):
    """Take a queued job off the queue or stop a running one; 409 if it has already finished."""
    job = _get_job(request, job_id)
    if not cancel_job(job):
        raise ApiError(409, "This job has already finished; there is nothing to cancel.")
    return job_out(request, job)


@router.post(
    "/jobs/{uuid:job_id}/retry",
    response={200: JobOut, 401: ErrorOut, 404: ErrorOut, 409: ErrorOut},
    summary="Retry a failed or canceled job",
)
def retry(request: HttpRequest, job_id: UUID):
    """Queue a failed or canceled job again; 409 if it cannot be, or if the same work is already active."""
    job = _get_job(request, job_id)
    try:
        if not retry_job(job):
            raise ApiError(409, "Only a failed or canceled job can be retried.")
    except IdenticalJobActive as error:
        raise ApiError(
            409,
            "The same track with the same settings is already being separated.",
            code="identical_job_active",
            details={"job": job_out(request, error.job)},
        ) from None
    return job_out(request, job)


@router.get(
    "/jobs/{uuid:job_id}/stems",
    response={200: list[StemOut], **ERRORS},
    url_name="job_stems",
    summary="A job's stems",
)
def stems(request: HttpRequest, job_id: UUID):
    """Names, sizes and absolute download URLs (empty until the job has succeeded)."""
    job = _get_job(request, job_id)
    return [
        {
            "name": stem.name,
            "label": stem.label,
            "size": stem.size,
            "url": request.build_absolute_uri(reverse("api:stem_download", args=[job.pk, stem.name])),
        }
        for stem in job.stems.all()
    ]


@router.get(
    "/jobs/{uuid:job_id}/stems/{slug:stem_name}",
    response={200: None, **ERRORS},
    url_name="stem_download",
    summary="Download a stem",
)
def stem_download(request: HttpRequest, job_id: UUID, stem_name: str) -> HttpResponse:
    """The stem file as an attachment; HTTP Range requests are honoured."""
    job = _get_job(request, job_id)
    stem = job.stems.filter(name=stem_name).first()
    if stem is None:
        raise ApiError(404, "No such stem.")
    return stored_file_response(request, stem.file, stem.download_name)


@router.post(
    "/jobs/{uuid:job_id}/exports",
    response={200: ExportOut, 202: ExportOut, **ERRORS, 409: ErrorOut},
    summary="Mix the stems into one file",
    openapi_extra={
        "requestBody": {
            "content": {"application/json": {"schema": ExportIn.model_json_schema()}},
            "required": False,
        }
    },
)
def create_export(request: HttpRequest, job_id: UUID):
    """Queue (or find) the mix of these settings: 202 while it renders, 200 once it exists finished.

    The same settings always give the same export; mute and solo work as in the mixer; `tempo`
    (percent, 50-150, pitch kept), `semitones` (-12 to 12, tempo kept) and `loop` (`{"start": s,
    "end": s}`: only that span) as in the player. No body means every stem at its level, as MP3.
    The body is read after the job is found, so another user's job is a 404 whatever is sent.
    """
    job = _get_job(request, job_id)
    settings = _export_settings(request)
    if job.status != Job.Status.SUCCEEDED:
        raise ApiError(409, MSG_NO_STEMS_TO_MIX)
    stems = list(job.stems.all())
    names = {stem.name for stem in stems}
    unknown = sorted((set(settings.gains) | set(settings.mute) | set(settings.solo)) - names)
    if unknown:
        raise ApiError(
            400,
            f"This track has no stem named {', '.join(unknown)}; its stems are {', '.join(sorted(names))}.",
        )
    data = {"output_format": settings.format}
    data.update({f"gain_{name}": str(gain) for name, gain in settings.gains.items()})
    data.update({f"mute_{name}": "on" for name in settings.mute})
    data.update({f"solo_{name}": "on" for name in settings.solo})
    data.update(settings.practice_fields())
    form = MixExportForm(data, stems, job.duration_seconds)
    if not form.is_valid():
        raise ApiError(400, " ".join(form.error_sentences()), details=form.errors.get_json_data())
    export = request_export(
        job, form.effective_gains(), form.cleaned_data["output_format"], form.practice_settings()
    )
    return Status(200 if export.is_finished else 202, export_out(request, export))


def _export_settings(request: HttpRequest) -> ExportIn:
    if not request.body:
        return ExportIn()
    if request.content_type != "application/json":
        raise ApiError(400, "Send the mix settings as JSON (Content-Type: application/json).")
    try:
        return ExportIn.model_validate(json.loads(request.body))
    except json.JSONDecodeError:
        raise ApiError(400, "The request body is not valid JSON.") from None
    except PydanticValidationError as error:
        problems = error.errors(include_url=False)
        fields = [{"field": ".".join(str(p) for p in e["loc"]), "message": e["msg"]} for e in problems]
        raise ApiError(400, " ".join(validation_sentence(e) for e in problems), details=fields) from None


@router.get(
    "/jobs/{uuid:job_id}/exports/{uuid:export_id}",
    response={200: ExportOut, **ERRORS},
    summary="A mix's status",
)
def get_export(request: HttpRequest, job_id: UUID, export_id: UUID):
    job = _get_job(request, job_id)
    export = job.exports.filter(pk=export_id).first()
    if export is None:
        raise ApiError(404, "No such mix.")
    export.job = job
    return export_out(request, export)


@router.get(
    "/jobs/{uuid:job_id}/exports/{uuid:export_id}/file",
    response={200: None, **ERRORS},
    url_name="export_download",
    summary="Download a finished mix",
)
def export_download(request: HttpRequest, job_id: UUID, export_id: UUID) -> HttpResponse:
    job = _get_job(request, job_id)
    export = job.exports.filter(pk=export_id, status=MixExport.Status.SUCCEEDED).first()
    if export is None:
        raise ApiError(404, "No such finished mix.")
    export.job = job
    return stored_file_response(request, export.file, export.download_name)
