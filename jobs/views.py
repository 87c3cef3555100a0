"""Thin views: parse the request, call one function, render."""

import json
from pathlib import PurePosixPath

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import content_disposition_header
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_htmx.http import HttpResponseClientRedirect

from jobs import player_settings
from jobs.api.tokens import create_token, revoke_token
from jobs.background.exports import request_export
from jobs.background.tasks import MSG_PROCESSING_PAUSED
from jobs.control import cancel_job, retry_job
from jobs.downloads import stored_file_response, streaming_response, zip_stream
from jobs.forms import ApiTokenForm, MixExportForm, ShareLinkForm, SignupForm, UploadForm, blank_upload_form
from jobs.limits import LimitExceeded, usage_for
from jobs.models import IdenticalJobActive, Job, MixExport
from jobs.realtime.fragments import EXPORT_TEMPLATE as EXPORT_FRAGMENT
from jobs.realtime.fragments import SHARES_TEMPLATE as SHARES_FRAGMENT
from jobs.realtime.fragments import job_row_html, status_context
from jobs.sharing.links import NotShareable, create_link, revoke_link
from jobs.submission import UploadNotStored, submit_import, submit_within_limits
from jobs.upload_limits import refusal_message
from jobs.webhooks import rotate_secret, secret_for

MSG_NO_STEMS_TO_MIX = "Only a finished separation can be mixed: this track has no stems yet."
MSG_IMPORT_WAS_DUPLICATE = (
    "The imported track is one you had already separated with these settings: here is that job."
)


def _get_job_for_user(request: HttpRequest, job_id) -> Job:
    """The job if the user may see it (owner or staff), else 404: others' jobs do not exist."""
    try:
        return Job.objects.for_user(request.user).get(pk=job_id)
    except Job.DoesNotExist:
        raise Http404("No such job.") from None


@login_required
@require_GET
def job_list(request: HttpRequest) -> HttpResponse:
    url_import = settings.STEMSITE_URL_IMPORT != "off"
    context = {**_job_page(request), "blank_form": blank_upload_form(request), "url_import": url_import}
    return render(request, "jobs/job_list.html", context)


def _job_page(request: HttpRequest) -> dict:
    """One page of the user's jobs, newest first: a long history must not make every visit slow.

    Any unreadable or out-of-range `?page=` shows the nearest real page, never an error."""
    jobs = Job.objects.listed().filter(owner=request.user).as_rows()
    page = Paginator(jobs, settings.STEMSITE_JOBS_PER_PAGE).get_page(request.GET.get("page"))
    return {"jobs": page.object_list, "rows": [job_row_html(job) for job in page.object_list], "page": page}


@login_required
@require_POST
def job_create(request: HttpRequest) -> HttpResponse:
    form = UploadForm(request.POST, request.FILES)
    if form.is_valid():
        try:
            if form.import_url:
                submissions = [submit_import(request.user, form.import_url, form.job_options)]
            else:
                submissions = submit_within_limits(request.user, form.accepted, form.job_options)
        except (LimitExceeded, UploadNotStored) as error:
            form.add_error(None, str(error))
    if not form.is_valid():
        if request.htmx:
            return render(request, "jobs/job_list.html#upload-form", {"form": form})
        return render(request, "jobs/job_list.html", {**_job_page(request), "form": form}, status=400)
    for submission in submissions:
        if submission.reused:
            done = _already(submission.job)
            messages.info(
                request,
                f"“{submission.job.original_name}” {done} with these settings: "
                "here is that job instead of a new one.",
            )
    if any(submission.paused for submission in submissions):
        messages.warning(request, MSG_PROCESSING_PAUSED)
    for rejected in form.rejected:
        messages.error(request, f"Not uploaded: {rejected}")
    if len(submissions) == 1 and not form.rejected:
        target = submissions[0].job.get_absolute_url()
    else:
        queued = sum(not s.reused for s in submissions)
        if queued:
            messages.success(request, f"Queued {queued} track{'s' if queued != 1 else ''}.")
        target = reverse("job_list")
    return _back_to(request, target)


def _already(job: Job) -> str:
    if job.is_finished:
        return "was already separated"
    if job.status == Job.Status.DOWNLOADING:
        return "is already being downloaded"
    return "is already being separated"


@login_required
@require_GET
def job_detail(request: HttpRequest, job_id) -> HttpResponse:
    job = _get_job_for_user(request, job_id)
    if job.duplicate_of_id:
        messages.info(request, MSG_IMPORT_WAS_DUPLICATE)
        return redirect(job.duplicate_of)
    context = {**status_context(job), "player_settings": player_settings.saved_for(request.user, job)}
    return render(request, "jobs/job_detail.html", context)


@login_required
@require_http_methods(["GET", "POST"])
def job_player_settings(request: HttpRequest, job_id) -> HttpResponse:
    """The player's settings for this user and job: GET reads them, POST (JSON) replaces them."""
    job = _get_job_for_user(request, job_id)
    if request.method == "GET":
        return JsonResponse({"settings": player_settings.saved_for(request.user, job)})
    if len(request.body) > player_settings.MAX_BODY_BYTES:
        return JsonResponse({"error": "The player settings are too large."}, status=400)
    try:
        values = player_settings.clean(json.loads(request.body), job)
    except json.JSONDecodeError:
        return JsonResponse({"error": "Send the player settings as JSON."}, status=400)
    except player_settings.InvalidSettings as error:
        return JsonResponse({"error": str(error)}, status=400)
    player_settings.save(request.user, job, values)
    return JsonResponse({"settings": values})


@login_required
@require_GET
def stem_file(request: HttpRequest, job_id, stem_name: str) -> HttpResponse:
    """A stem for its owner: a download by default, inline with ?play for the audio player."""
    job = _get_job_for_user(request, job_id)
    stem = job.stems.filter(name=stem_name).first()
    if stem is None:
        raise Http404("No such stem.")
    play = "play" in request.GET
    served = stem.preview if play and stem.preview else stem.file
    filename = (
        stem.download_name
        if served == stem.file
        else f"{job.display_name} - {stem.name}{PurePosixPath(served.name).suffix}"
    )
    response = stored_file_response(request, served, filename, as_attachment=not play)
    response.setdefault("Cache-Control", "private, max-age=3600")
    return response


@login_required
@require_GET
def stems_zip(request: HttpRequest, job_id) -> HttpResponse:
    """Every stem of the job in one zip, streamed as it is written."""
    job = _get_job_for_user(request, job_id)
    stems = list(job.stems.all())
    if not stems:
        raise Http404("This track has no stems yet.")
    entries = [(stem.download_name, stem.file.storage, stem.file.name) for stem in stems]
    response = streaming_response(request, zip_stream(entries), content_type="application/zip")
    response["Content-Disposition"] = content_disposition_header(True, f"{job.display_name} - stems.zip")
    response["Cache-Control"] = "private, no-store"
    return response


@login_required
@require_POST
def export_create(request: HttpRequest, job_id) -> HttpResponse:
    """Queue (or find) the mix of the posted mixer settings; answers with its status block."""
    job = _get_job_for_user(request, job_id)
    if job.status != Job.Status.SUCCEEDED:
        return render(request, EXPORT_FRAGMENT, {"errors": [MSG_NO_STEMS_TO_MIX]}, status=400)
    form = MixExportForm(request.POST, job.stems.all(), job.duration_seconds)
    if not form.is_valid():
        return render(request, EXPORT_FRAGMENT, {"errors": form.error_sentences()}, status=400)
    export = request_export(
        job, form.effective_gains(), form.cleaned_data["output_format"], form.practice_settings()
    )
    return render(request, EXPORT_FRAGMENT, {"export": export, "job": job})


@login_required
@require_GET
def export_file(request: HttpRequest, job_id, export_id) -> HttpResponse:
    """A finished mix for its owner, as a download."""
    job = _get_job_for_user(request, job_id)
    export = job.exports.filter(pk=export_id, status=MixExport.Status.SUCCEEDED).first()
    if export is None:
        raise Http404("No such mix.")
    export.job = job
    return stored_file_response(request, export.file, export.download_name)


@login_required
@require_POST
def job_cancel(request: HttpRequest, job_id) -> HttpResponse:
    job = _get_job_for_user(request, job_id)
    if cancel_job(job):
        messages.success(request, f"Canceled “{job.original_name}”.")
    else:
        messages.error(request, "This job has already finished; there is nothing to cancel.")
    return _back_to(request, job.get_absolute_url())


@login_required
@require_POST
def job_retry(request: HttpRequest, job_id) -> HttpResponse:
    job = _get_job_for_user(request, job_id)
    try:
        if not retry_job(job):
            messages.error(request, "Only a failed or canceled job can be retried.")
    except IdenticalJobActive as error:
        messages.info(
            request,
            "The same track with the same settings is already being separated: here is that job.",
        )
        return _back_to(request, error.job.get_absolute_url())
    return _back_to(request, job.get_absolute_url())


@login_required
@require_POST
def share_create(request: HttpRequest, job_id) -> HttpResponse:
    """A new share link for the owner's finished job, shown on this answer only (it is stored hashed)."""
    job = _get_job_for_user(request, job_id)
    if job.owner_id != request.user.pk:
        raise Http404("No such job.")  # sharing is the owner's decision, even for staff
    form = ShareLinkForm(request.POST)
    if not form.is_valid():
        return _shares_answer(request, job, status=400, share_errors=form.error_sentences())
    try:
        _, raw = create_link(job, **form.cleaned_data)
    except NotShareable as error:
        return _shares_answer(request, job, status=400, share_errors=[str(error)])
    url = request.build_absolute_uri(reverse("share_page", args=[raw]))
    return _shares_answer(request, job, new_share_url=url)


@login_required
@require_POST
def share_revoke(request: HttpRequest, job_id, share: int) -> HttpResponse:
    """Revoke a share link: from now on it opens a plain 404 page."""
    job = _get_job_for_user(request, job_id)
    if not revoke_link(job, share):
        raise Http404("No such share link.")
    if request.htmx:
        return _shares_answer(request, job)
    messages.success(request, "The share link was revoked: it no longer opens.")
    return redirect(job)


def _shares_answer(request: HttpRequest, job: Job, status: int = 200, **extra) -> HttpResponse:
    """The job's share section for htmx, or the whole page; never cached (it may hold a new link)."""
    context = {**status_context(job), **extra}
    template = SHARES_FRAGMENT if request.htmx else "jobs/job_detail.html"
    response = render(request, template, context, status=status)
    response["Cache-Control"] = "no-store"
    return response


def bad_request(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """Django's 400 page; an upload over the size or file-count limit says which, as a sentence."""
    return render(request, "400.html", {"message": refusal_message(exception)}, status=400)


def _back_to(request: HttpRequest, url: str) -> HttpResponse:
    return HttpResponseClientRedirect(url) if request.htmx else redirect(url)


@login_required
@require_POST
def job_delete(request: HttpRequest, job_id) -> HttpResponse:
    job = _get_job_for_user(request, job_id)
    if not job.is_finished:
        messages.error(
            request, "This track is still being processed; it can be deleted once it has finished."
        )
        target = job.get_absolute_url()
    else:
        job.delete_with_files()
        messages.success(request, f"Deleted “{job.original_name}” and its stems.")
        target = reverse("job_list")
    return _back_to(request, target)


def _account_page(request: HttpRequest, status: int = 200, **context) -> HttpResponse:
    context.setdefault("token_form", ApiTokenForm())
    context["usage"] = usage_for(request.user)
    context["api_tokens"] = request.user.api_tokens.filter(revoked_at__isnull=True)
    context["webhook_secret"] = secret_for(request.user)
    return render(request, "registration/account.html", context, status=status)


@login_required
@require_GET
def account(request: HttpRequest) -> HttpResponse:
    return _account_page(request)


@login_required
@require_POST
def webhook_secret_rotate(request: HttpRequest) -> HttpResponse:
    rotate_secret(request.user)
    messages.success(
        request, "Your webhook secret was replaced: events are signed with the new one from now on."
    )
    return redirect("account")


@login_required
@require_POST
def token_create(request: HttpRequest) -> HttpResponse:
    """A new API token, shown on this answer only: it is stored as a hash and cannot be shown again."""
    form = ApiTokenForm(request.POST)
    if not form.is_valid():
        return _account_page(request, status=400, token_form=form)
    token, raw = create_token(request.user, form.cleaned_data["name"])
    response = _account_page(request, new_token=raw, new_token_name=token.name)
    response["Cache-Control"] = "no-store"
    return response


@login_required
@require_POST
def token_revoke(request: HttpRequest) -> HttpResponse:
    token_id = request.POST.get("token_id", "").strip()
    if not token_id.isdigit() or not revoke_token(request.user, int(token_id)):
        raise Http404("No such token.")
    messages.success(request, "The token was revoked: calls made with it are now refused.")
    return redirect("account")


@require_http_methods(["GET", "POST"])
def signup(request: HttpRequest) -> HttpResponse:
    if request.user.is_authenticated:
        return redirect("job_list")
    form = SignupForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        user = form.save()
        login(request, user, backend="django.contrib.auth.backends.ModelBackend")
        return redirect("job_list")
    return render(request, "registration/signup.html", {"form": form})
