"""RQ entry points: load the job, run the separation, store stems, publish every change."""

import logging
import os
import shutil
import tempfile
import time
from pathlib import Path, PurePosixPath

import django_rq
import torch
from django.conf import settings
from django.core.files import File
from redis.exceptions import RedisError
from rq.timeouts import JobTimeoutException

from jobs import audio, separation
from jobs.events import publish_job_state
from jobs.models import Job, Stem

logger = logging.getLogger(__name__)

STEM_FORMAT = "mp3"
MSG_QUEUE_DOWN = (
    "Processing is unavailable right now: the job queue cannot be reached. "
    "Please upload the file again in a few minutes."
)
MSG_OUT_OF_MEMORY = "The server ran out of memory while separating this track. Try a shorter track."
MSG_WORKER_LOST = (
    "The worker stopped unexpectedly while separating this track (it may have run out of memory). "
    "Try again, or try a shorter track."
)
MSG_INTERNAL = "Separation failed because of an error on the server. The site's staff can see the details."


def job_timeout(duration_seconds: float) -> int:
    """RQ's 180 s default kills ordinary separations: allow time in proportion to the audio."""
    per_second = settings.STEMSITE_TIMEOUT_PER_AUDIO_SECOND
    return int(settings.STEMSITE_TIMEOUT_BASE_SECONDS + per_second * (duration_seconds or 0))


def enqueue_separation(job: Job) -> None:
    """Queue the job for a worker; if Redis is unreachable the job fails with a clear message."""
    try:
        queue = django_rq.get_queue(settings.STEMSITE_QUEUE)
        queue.enqueue(
            separate_job,
            str(job.pk),
            job_id=f"separate-{job.pk}",
            job_timeout=job_timeout(job.duration_seconds),
            result_ttl=24 * 3600,
            failure_ttl=7 * 24 * 3600,
            description=f"separate {job.pk}",
        )
    except (RedisError, OSError):
        logger.exception("Could not enqueue job %s", job.pk)
        job.mark_failed(MSG_QUEUE_DOWN)


def separate_job(job_id: str) -> None:
    """Run one separation. Every way out leaves the job succeeded or failed, never running."""
    job = Job.objects.select_related("owner").filter(pk=job_id).first()
    if job is None or job.status != Job.Status.QUEUED:
        logger.info("Skipping job %s: it is gone or no longer queued", job_id)
        return
    _configure_torch_threads()
    job.mark_running()
    publish_job_state(job)
    try:
        _separate_and_store(job, _ProgressReporter(job))
    except audio.AudioError as error:
        _fail(job, str(error))
    except separation.ModelUnavailable as error:
        logger.error("Job %s: %s", job.pk, error)
        _fail(job, str(error))
    except JobTimeoutException:
        minutes = max(1, job_timeout(job.duration_seconds) // 60)
        _fail(job, f"Separation took longer than the allowed {minutes} minutes and was stopped.")
    except (MemoryError, torch.OutOfMemoryError):
        _fail(job, MSG_OUT_OF_MEMORY)
    except RuntimeError as error:
        if "allocate memory" not in str(error) and "out of memory" not in str(error):
            logger.exception("Job %s failed", job.pk)
            _fail(job, MSG_INTERNAL)
            raise
        _fail(job, MSG_OUT_OF_MEMORY)
    except Exception:
        logger.exception("Job %s failed", job.pk)
        _fail(job, MSG_INTERNAL)
        raise
    else:
        job.mark_succeeded()
        publish_job_state(job)


def _separate_and_store(job: Job, report: "_ProgressReporter") -> None:
    job.delete_stems()
    with tempfile.TemporaryDirectory(prefix="stemsite-") as workdir:
        suffix = PurePosixPath(job.input_file.name).suffix
        source = Path(workdir) / f"input{suffix}"
        with job.input_file.open("rb") as src, source.open("wb") as dst:
            shutil.copyfileobj(src, dst, 1024 * 1024)
        wav, sample_rate = audio.decode(
            str(source),
            max_seconds=settings.STEMSITE_MAX_DURATION_SECONDS,
            timeout=max(60, settings.STEMSITE_MAX_DURATION_SECONDS),
        )
        report(0.03)
        model = separation.load_model(job.model_name, settings.STEMSITE_MODEL_REPO)
        report(0.05)
        options = separation.SeparationOptions(device=settings.STEMSITE_DEVICE)
        stems = separation.separate(model, wav, sample_rate, options, lambda f: report(0.05 + 0.85 * f))
        del wav
        for index, (name, samples) in enumerate(stems.items(), start=1):
            path = Path(workdir) / f"{name}.{STEM_FORMAT}"
            separation.encode(samples, path, model.samplerate, settings.STEMSITE_MP3_BITRATE)
            stem = Stem(job=job, name=name, size=path.stat().st_size)
            with path.open("rb") as handle:
                stem.file.save(path.name, File(handle), save=True)
            report(0.9 + 0.1 * index / len(stems))


def _fail(job: Job, message: str) -> None:
    job.delete_stems()
    job.mark_failed(message)
    publish_job_state(job)


def fail_lost_job(job_id: str) -> None:
    """Mark a job whose worker process died mid-run as failed, unless it already finished."""
    job = Job.objects.select_related("owner").filter(pk=job_id, status=Job.Status.RUNNING).first()
    if job is not None:
        logger.warning("Job %s lost its worker process", job_id)
        _fail(job, MSG_WORKER_LOST)


def _configure_torch_threads() -> None:
    threads = settings.STEMSITE_TORCH_THREADS
    torch.set_num_threads(threads if threads > 0 else len(os.sched_getaffinity(0)))


class _ProgressReporter:
    """Writes and pushes progress at most every STEMSITE_PROGRESS_INTERVAL seconds."""

    def __init__(self, job: Job):
        self.job = job
        self.last_time = 0.0
        self.last_percent = 0

    def __call__(self, fraction: float) -> None:
        percent = min(99, int(fraction * 100))
        now = time.monotonic()
        if percent <= self.last_percent or now - self.last_time < settings.STEMSITE_PROGRESS_INTERVAL:
            return
        self.last_time, self.last_percent = now, percent
        self.job.set_progress(percent)
        publish_job_state(self.job)


def preload_default_model() -> None:
    """Load the site's model in the worker's parent, so every forked job starts warm.

    Runs single-threaded: no torch thread pool may exist in a parent that forks.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        separation.load_model(settings.STEMSITE_MODEL, settings.STEMSITE_MODEL_REPO)
    except separation.ModelUnavailable as error:
        logger.warning("Model not preloaded: %s", error)
    finally:
        torch.set_num_threads(threads)
