"""Turning validated uploads into queued jobs, with nothing left behind if that fails."""

import hashlib
import json
from dataclasses import dataclass

from django.db import IntegrityError, transaction

from jobs.forms import AcceptedFile
from jobs.models import Job, upload_label
from jobs.options import JobOptions
from jobs.tasks import enqueue_separation


@dataclass(frozen=True)
class Submission:
    job: Job
    reused: bool  # the same audio with the same options was already separated (or is on its way)
    paused: bool = False  # saved and queued in the database, but Redis could not take it yet


def dedupe_key(content_hash: str, model: str, settings_json: dict) -> str:
    """One value per identical request: the database allows one active job per owner and key."""
    payload = json.dumps({"audio": content_hash, "model": model, "options": settings_json}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()


def submit_job(owner, accepted: AcceptedFile, options: JobOptions, callback_url: str = "") -> Submission:
    """Reuse an identical job of this owner, or store the upload and queue a new one on commit.

    A new job is saved with its `callback_url` before it is queued, so even the fastest run finds
    it; a reused job keeps the callback it was made with.

    Two identical requests at once (a double click, a resent form) both miss the lookup; the
    database's unique constraint lets one insert win and the other gets the winner's job.
    """
    settings_json = {key: value for key, value in options.as_dict().items() if key != "model"}
    key = dedupe_key(accepted.content_hash, options.model, settings_json)
    existing = (
        Job.objects.filter(
            owner=owner,
            content_hash=accepted.content_hash,
            model_name=options.model,
            options=settings_json,
            status__in=(Job.Status.QUEUED, Job.Status.RUNNING, Job.Status.SUCCEEDED),
        )
        .order_by("-created_at")
        .first()
    )
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
    )
    enqueued = []
    try:
        with transaction.atomic():
            job.input_file.save(upload.name, upload, save=False)
            job.save()
            transaction.on_commit(lambda: enqueued.append(enqueue_separation(job)))
    except IntegrityError:
        job.input_file.delete(save=False)
        winner = Job.objects.filter(owner=owner, dedupe_key=key, status__in=Job.ACTIVE).first()
        if winner is None:
            raise  # the constraint that fired was not the duplicate one
        return Submission(winner, reused=True)
    except BaseException:
        if job.input_file.name:
            job.input_file.delete(save=False)
        raise
    return Submission(job, reused=False, paused=enqueued == [False])
