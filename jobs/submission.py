"""Turning validated uploads into queued jobs, and links into importing jobs, with nothing left
behind if that fails."""

import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from urllib.parse import unquote, urlsplit

from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction
from django.db.models import Q

from jobs import tracing
from jobs.background.tasks import enqueue_separation
from jobs.forms import AcceptedFile
from jobs.limits import check_upload_allowed
from jobs.models import Job, upload_label
from jobs.options import JobOptions
from jobs.storage_errors import FULL, READ_ONLY, STORAGE_EXCEPTIONS, UNREACHABLE, storage_problem
from jobs.webhooks import queue_job_event

logger = logging.getLogger(__name__)

MSG_NO_ROOM = (
    "The server has no room to store uploads right now, so nothing was saved. Try again later; "
    "the site's staff have been told in the log."
)
MSG_READ_ONLY = (
    "The server's storage is read-only right now, so nothing was saved. Try again later; "
    "the site's staff have been told in the log."
)
MSG_UNREACHABLE = (
    "The server's file storage cannot be reached right now, so nothing was saved. Try again later; "
    "the site's staff have been told in the log."
)
MESSAGES = {FULL: MSG_NO_ROOM, READ_ONLY: MSG_READ_ONLY, UNREACHABLE: MSG_UNREACHABLE}


class UploadNotStored(Exception):
    """The server could not store the upload (full, read-only or unreachable storage); a sentence
    for the user. `unreachable` may pass soon (an outage); full or read-only storage waits for staff."""

    def __init__(self, problem: str):
        super().__init__(MESSAGES[problem])
        self.unreachable = problem == UNREACHABLE


@dataclass(frozen=True)
class Submission:
    job: Job
    reused: bool  # the same audio with the same options was already separated (or is on its way)
    # What queueing on commit returned: [False] once committed means Redis could not take it yet.
    enqueued: list = field(default_factory=list)

    @property
    def paused(self) -> bool:
        """Saved and queued in the database, but not yet in Redis; read after the commit."""
        return self.enqueued == [False]


def dedupe_key(content_hash: str, model: str, settings_json: dict) -> str:
    """One value per identical request: the database allows one active job per owner and key."""
    payload = json.dumps({"audio": content_hash, "model": model, "options": settings_json}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()


def _settings_json(options: JobOptions) -> dict:
    return {key: value for key, value in options.as_dict().items() if key != "model"}


def identical_job(owner, content_hash: str, model: str, settings_json: dict) -> Job | None:
    """The owner's newest job for the same audio and options that is queued, running or done."""
    return (
        Job.objects.listed()
        .filter(
            owner=owner,
            content_hash=content_hash,
            model_name=model,
            options=settings_json,
            status__in=(Job.Status.QUEUED, Job.Status.RUNNING, Job.Status.SUCCEEDED),
        )
        .order_by("-created_at")
        .first()
    )


def submit_job(owner, accepted: AcceptedFile, options: JobOptions, callback_url: str = "") -> Submission:
    """Reuse an identical job of this owner, or store the upload and queue a new one on commit.

    A new job is saved with its `callback_url` before it is queued, so even the fastest run finds
    it; a reused job keeps the callback it was made with.

    Two identical requests at once (a double click, a resent form) both miss the lookup; the
    database's unique constraint lets one insert win and the other gets the winner's job.
    """
    settings_json = _settings_json(options)
    key = dedupe_key(accepted.content_hash, options.model, settings_json)
    existing = identical_job(owner, accepted.content_hash, options.model, settings_json)
    if existing is not None:
        return Submission(existing, reused=True)
    upload = accepted.upload
    job = Job(
        owner=owner,
        original_name=upload_label(upload.name),
        content_hash=accepted.content_hash,
        model_name=options.model,
        options=settings_json,
        duration_seconds=accepted.info.duration,
        input_size=upload.size,
        dedupe_key=key,
        callback_url=callback_url,
        trace_parent=tracing.current_traceparent(),
    )
    enqueued = []
    try:
        with transaction.atomic():
            with tracing.span(
                "store upload", {"stemsite.job.id": str(job.pk), "stemsite.bytes": upload.size or 0}
            ):
                job.input_file.save(upload.name, upload, save=False)
            job.save()
            transaction.on_commit(lambda: enqueued.append(enqueue_separation(job)))
    except IntegrityError:
        _discard_input(job)
        winner = Job.objects.filter(owner=owner, dedupe_key=key, status__in=Job.ACTIVE).first()
        if winner is None:
            raise  # the constraint that fired was not the duplicate one
        return Submission(winner, reused=True)
    except BaseException:
        _discard_input(job)
        raise
    return Submission(job, reused=False, enqueued=enqueued)


def _discard_input(job: Job) -> None:
    """Remove what was stored of a job's upload; best effort, since the caller's error says why."""
    try:
        job.delete_input()
    except STORAGE_EXCEPTIONS as error:
        logger.warning("Job %s: its stored upload could not be removed: %s", job.pk, error)


def submit_within_limits(
    owner, files: list[AcceptedFile], options: JobOptions, callback_url: str = ""
) -> list[Submission]:
    """Check the owner's limits and submit every file as one step; raises LimitExceeded.

    Two uploads at once must not both pass a check that only one of them fits: the owner's row is
    locked until the jobs are saved (on SQLite every write transaction already runs alone). If a
    later file fails, the jobs saved before it are rolled back, so their stored uploads go too;
    storage that is full, read-only or unreachable raises UploadNotStored.
    """
    submissions: list[Submission] = []
    try:
        with transaction.atomic():
            get_user_model().objects.select_for_update().only("pk").get(pk=owner.pk)
            check_upload_allowed(owner, [accepted.upload.size for accepted in files])
            for accepted in files:
                submissions.append(submit_job(owner, accepted, options, callback_url))
    except BaseException as error:
        for submission in submissions:
            if not submission.reused:
                _discard_input(submission.job)
        problem = storage_problem(error)
        if problem is not None:
            logger.error("An upload of %s could not be stored: %s", owner, error)
            raise UploadNotStored(problem) from error
        raise
    return submissions


def source_key(url: str, model: str, settings_json: dict) -> str:
    """One value per link and options: the database allows one active import per owner and key."""
    payload = json.dumps({"url": url, "model": model, "options": settings_json}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()


def submit_import(owner, url: str, options: JobOptions, callback_url: str = "") -> Submission:
    """The owner's job for this link and options if there is one, or a new job that downloads it.

    The new job exists at once (downloading) and is queued for the imports queue on commit; the
    owner's limits are checked now as for one more upload, and again once the file has arrived.
    Raises LimitExceeded.
    """
    settings_json = _settings_json(options)
    key = source_key(url, options.model, settings_json)
    existing = _job_for_link(owner, key)
    if existing is not None:
        return Submission(existing, reused=True)
    from jobs.background.imports import enqueue_import  # the worker side imports this module

    job = Job(
        owner=owner,
        original_name=upload_label(link_label(url)),
        model_name=options.model,
        options=settings_json,
        status=Job.Status.DOWNLOADING,
        source_url=url,
        source_key=key,
        callback_url=callback_url,
        trace_parent=tracing.current_traceparent(),
    )
    enqueued = []
    try:
        with transaction.atomic():
            get_user_model().objects.select_for_update().only("pk").get(pk=owner.pk)
            check_upload_allowed(owner, [0])
            job.save()
            transaction.on_commit(lambda: enqueued.append(enqueue_import(job)))
    except IntegrityError:
        winner = _job_for_link(owner, key)
        if winner is None:
            raise
        return Submission(winner, reused=True)
    return Submission(job, reused=False, enqueued=enqueued)


def _job_for_link(owner, key: str) -> Job | None:
    """The owner's newest job made from this link with these options, unless it failed or was
    canceled; an import that became an existing job gives that job."""
    found = (
        Job.objects.filter(owner=owner, source_key=key)
        .filter(Q(status__in=REUSABLE) | Q(duplicate_of__status__in=REUSABLE))
        .select_related("duplicate_of")
        .order_by("-created_at")
        .first()
    )
    if found is None:
        return None
    return found.duplicate_of or found


REUSABLE = (Job.Status.DOWNLOADING, Job.Status.QUEUED, Job.Status.RUNNING, Job.Status.SUCCEEDED)


def link_label(url: str) -> str:
    """What an import is called until its download names it: the link's file name, or its site."""
    parts = urlsplit(url)
    name = PurePosixPath(unquote(parts.path)).name
    return name or parts.hostname or "track"


def accept_import(job: Job, accepted: AcceptedFile) -> Job:
    """A downloaded track that passed the upload checks: the job that now carries it.

    The same audio with the same options already separated (or on its way) gives that job, and
    this one becomes a pointer to it (merge_into); otherwise the owner's limits are checked again
    as for an upload of this file, the file is stored and the job queued for separation on
    commit. Raises LimitExceeded, or UploadNotStored when storage fails; nothing is left stored.
    """
    owner = job.owner
    existing = identical_job(owner, accepted.content_hash, job.model_name, job.options)
    if existing is not None:
        return _merge(job, existing)
    upload = accepted.upload
    fields = {
        "content_hash": accepted.content_hash,
        "dedupe_key": dedupe_key(accepted.content_hash, job.model_name, job.options),
        "input_size": upload.size,
        "duration_seconds": accepted.info.duration,
        "original_name": upload_label(upload.name),
    }
    try:
        with transaction.atomic():
            get_user_model().objects.select_for_update().only("pk").get(pk=owner.pk)
            check_upload_allowed(owner, [upload.size], excluding=job)
            job.input_file.save(upload.name, upload, save=False)
            with transaction.atomic():
                moved = job.finish_download(input_file=job.input_file.name, **fields)
            if moved:
                transaction.on_commit(lambda: enqueue_separation(job))
    except IntegrityError:
        _discard_input(job)
        active = Job.objects.filter(owner=owner, dedupe_key=fields["dedupe_key"], status__in=Job.ACTIVE)
        winner = active.first()
        if winner is None:
            raise
        return _merge(job, winner)
    except BaseException as error:
        _discard_input(job)
        problem = storage_problem(error)
        if problem is not None:
            logger.error("Job %s: the imported track could not be stored: %s", job.pk, error)
            raise UploadNotStored(problem) from error
        raise
    if not moved:  # canceled while it was being checked
        _discard_input(job)
    return job


def _merge(job: Job, existing: Job) -> Job:
    """Make the import a pointer to `existing`; a callback URL it came with goes to `existing` if
    that has none (and is sent at once if `existing` has finished)."""
    if not job.merge_into(existing):
        return job
    logger.info("Job %s: the imported track is job %s's; the import points there", job.pk, existing.pk)
    if job.callback_url and not existing.callback_url:
        existing.callback_url = job.callback_url
        existing.save(update_fields=["callback_url"])
        if existing.is_finished:
            queue_job_event(existing)
    return existing
