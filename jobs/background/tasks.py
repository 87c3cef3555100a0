"""RQ entry points: load the job, run the separation, store stems, publish every change."""

import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

import django_rq
from django.conf import settings
from django.core.files import File
from django.db import transaction
from redis.exceptions import RedisError
from rq import get_current_job
from rq.job import Callback
from rq.timeouts import JobTimeoutException

from jobs import tracing
from jobs.background.analysis import analyse_separation
from jobs.engine import audio
from jobs.engine.peaks import compute_peaks, encoder_scale
from jobs.models import Job, Stem
from jobs.options import JobOptions
from jobs.realtime.events import publish_job_row, publish_job_state, publish_queue
from jobs.storage_errors import FULL, READ_ONLY, STORAGE_EXCEPTIONS, UNREACHABLE, storage_problem
from jobs.webhooks import queue_job_event

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)

MSG_PROCESSING_PAUSED = (
    "Processing is paused: the job queue cannot be reached right now. Your track is saved and will "
    "start automatically as soon as processing resumes."
)
MSG_OUT_OF_MEMORY = "The server ran out of memory while separating this track. Try a shorter track."
MSG_WORKER_LOST = (
    "The worker stopped unexpectedly while separating this track (it may have run out of memory). "
    "Try again, or try a shorter track."
)
MSG_WORKER_SHUT_DOWN = (
    "The worker was shut down while separating this track (the server was stopped or restarted). "
    "Retry it to separate it again."
)
MSG_INTERNAL = "Separation failed because of an error on the server. The site's staff can see the details."
MSG_STORAGE_FULL = (
    "The server ran out of storage space while saving the stems, so none were kept. "
    "Try again later; the site's staff have been told in the log."
)
MSG_STORAGE_READ_ONLY = (
    "The server's storage is read-only, so the stems could not be saved and none were kept. "
    "Try again later; the site's staff have been told in the log."
)
MSG_STORAGE_UNREACHABLE = (
    "The server's file storage could not be reached, so the track could not be separated and no "
    "stems were kept. Try again later; the site's staff have been told in the log."
)
STORAGE_MESSAGES = {
    FULL: MSG_STORAGE_FULL,
    READ_ONLY: MSG_STORAGE_READ_ONLY,
    UNREACHABLE: MSG_STORAGE_UNREACHABLE,
}


# The player streams this compressed copy of a lossless stem (a 5-minute WAV stem is 50 MB).
PREVIEW_BITRATE = 192


def job_timeout(duration_seconds: float, options: JobOptions) -> int:
    """RQ's 180 s default kills ordinary separations: allow time for the audio and the model's cost."""
    per_second = settings.STEMSITE_TIMEOUT_PER_AUDIO_SECOND * options.cost
    return int(settings.STEMSITE_TIMEOUT_BASE_SECONDS + per_second * (duration_seconds or 0))


def enqueue_separation(job: Job) -> bool:
    """Queue the job's current attempt; False if Redis is unreachable.

    The row stays queued either way: the database is the truth, and the reconciler (jobs.background.reconcile)
    queues it once Redis answers again.
    """
    attributes = {"stemsite.job.id": str(job.pk), "stemsite.job.attempt": job.attempt}
    with tracing.span("enqueue separation", attributes, kind="producer", link=job.trace_parent):
        try:
            queue = django_rq.get_queue(settings.STEMSITE_QUEUE)
            queue.enqueue(
                separate_job,
                str(job.pk),
                job.attempt,
                job_id=job.rq_job_id,
                job_timeout=job_timeout(job.duration_seconds, job.job_options),
                result_ttl=24 * 3600,
                failure_ttl=7 * 24 * 3600,
                description=f"separate {job.pk} (attempt {job.attempt})",
                meta={"model": job.model_name, "job": str(job.pk), **tracing.rq_meta(job.trace_parent)},
                on_stopped=Callback(job_stopped),
            )
        except (RedisError, OSError) as error:
            logger.warning("Could not queue job %s, it stays queued for the reconciler: %s", job.pk, error)
            tracing.failed(tracing.QUEUE_UNREACHABLE)
            return False
        publish_job_row(job)  # a list open in another tab, or beside a script, shows it at once
        publish_queue()
    return True


def separate_job(job_id: str, attempt: int = 1) -> None:
    """Run one attempt of a separation. Every way out leaves the job finished, never running."""
    with tracing.span("separate", {"stemsite.job.id": job_id, "stemsite.job.attempt": attempt}):
        _separate_job(job_id, attempt)


def _separate_job(job_id: str, attempt: int) -> None:
    job = Job.objects.select_related("owner").filter(pk=job_id, attempt=attempt).first()
    if job is None or not job.mark_running():
        logger.info("Skipping job %s attempt %s: it is gone, superseded or no longer queued", job_id, attempt)
        return
    # torch and demucs load here, in the work horse: web processes import this module too.
    import torch

    from jobs.engine import separation

    _configure_torch_threads()
    with tracing.span("publish", {"stemsite.job.status": job.status}):
        publish_job_state(job)
        publish_queue()
    try:
        _separate_and_store(job, _ProgressReporter(job))
    except audio.AudioError as error:
        fail_job(job, str(error))
    except separation.ModelUnavailable as error:
        logger.error("Job %s: %s", job.pk, error)
        fail_job(job, str(error))
    except JobTimeoutException:
        fail_job(job, timeout_message(_current_timeout(job)))
    except (MemoryError, torch.OutOfMemoryError):
        fail_job(job, MSG_OUT_OF_MEMORY)
    except RuntimeError as error:
        if "allocate memory" not in str(error) and "out of memory" not in str(error):
            logger.exception("Job %s failed", job.pk)
            fail_job(job, MSG_INTERNAL)
            raise
        fail_job(job, MSG_OUT_OF_MEMORY)
    except Exception as error:
        problem = storage_problem(error)
        if problem is None:
            logger.exception("Job %s failed", job.pk)
            fail_job(job, MSG_INTERNAL)
            raise
        logger.error("Job %s: its files could not be read or stored: %s", job.pk, error)
        fail_job(job, STORAGE_MESSAGES[problem])  # which also removes what was stored of its stems
    else:
        with tracing.span("publish", {"stemsite.job.status": job.status}):
            publish_job_state(job)
    finally:
        publish_queue()


def _current_timeout(job: Job) -> int:
    """The limit RQ enforced: set at enqueue time, possibly by another process's settings."""
    rq_job = get_current_job()
    if rq_job is not None and rq_job.timeout:
        return int(rq_job.timeout)
    return job_timeout(job.duration_seconds, job.job_options)


def timeout_message(limit_seconds: int) -> str:
    if limit_seconds < 120:
        allowed = f"{limit_seconds} second{'s' if limit_seconds != 1 else ''}"
    else:
        allowed = f"{limit_seconds // 60} minutes"
    return f"Separation took longer than the allowed {allowed} for this track and was stopped."


def _separate_and_store(job: Job, report: "_ProgressReporter") -> None:
    """Separate into a temporary folder, then store every stem and only then list them.

    Stem rows and the succeeded status are written in one transaction after every file is
    stored, so a page never lists a stem that is missing or half-written.
    """
    from jobs.engine import separation

    options = job.job_options
    job.delete_stems()
    with tempfile.TemporaryDirectory(prefix="stemsite-") as workdir:
        suffix = PurePosixPath(job.input_file.name).suffix
        source = Path(workdir) / f"input{suffix}"
        with (
            tracing.span("fetch upload", {"stemsite.bytes": job.input_size}),
            job.input_file.open("rb") as src,
            source.open("wb") as dst,
        ):
            shutil.copyfileobj(src, dst, 1024 * 1024)
        with model_span(job.model_name):
            model = separation.load_model(
                job.model_name, settings.STEMSITE_MODEL_REPO, settings.STEMSITE_MODEL_CACHE_SIZE
            )
        report(0.02)
        run_options = engine_options(options, separation.resolve_device(settings.STEMSITE_DEVICE))
        with tracing.span("prepare engine") as span:
            plan = separation.plan_execution(model, run_options)  # converts a model on its first use
            if span is not None:
                span.set_attributes({"stemsite.engine": plan.engine, "stemsite.arithmetic": plan.arithmetic})
        if job.record_engine(plan.engine, plan.arithmetic):
            publish_job_state(job)
        report(0.03)
        # Decoded straight to the model's rate and channels; -t, a timeout and a memory limit
        # cut off a file whose header understates its length.
        with tracing.span("decode", {"stemsite.audio.seconds": job.duration_seconds or 0.0}):
            wav, sample_rate = audio.decode(
                str(source),
                max_seconds=settings.STEMSITE_MAX_DURATION_SECONDS,
                timeout=max(60, settings.STEMSITE_MAX_DURATION_SECONDS),
                sample_rate=model.samplerate,
                channels=model.audio_channels,
            )
        report(0.05)
        with _ModelPassSpans() as passes:
            stems = separation.separate(
                model, wav, sample_rate, run_options, lambda f: report(0.05 + 0.85 * f), plan=plan,
                on_chunk=passes,
            )  # fmt: skip
        del wav
        with tracing.span("analyse"):
            analyse_separation(job, stems, model.samplerate)
        if options.two_stems:
            stems = separation.two_stems(stems, options.two_stems)
        encoded = []
        for position, (name, samples) in enumerate(stems.items()):
            with tracing.span("encode", {"stemsite.stem": name, "stemsite.format": options.output_format}):
                encoded.append(_encode_stem(name, samples, Path(workdir), model.samplerate, options))
            report(0.9 + 0.05 * (position + 1) / len(stems))
        del stems
        with tracing.span("store", {"stemsite.stems": len(encoded)}):
            saved = _store_stems(job, encoded, report)
    _commit_stems(job, saved)


def model_span(name: str):
    """A `model load` span, or `model cache hit` when this process holds the model already (a
    worker loads it before it forks the job's process, so the job finds it there)."""
    from jobs.engine import separation

    loaded = separation.is_loaded(name, settings.STEMSITE_MODEL_REPO)
    return tracing.span("model cache hit" if loaded else "model load", {"stemsite.model": name})


class _ModelPassSpans:
    """A `model pass` span per model of a bag and per shift, from demucs' per-chunk reports."""

    def __init__(self):
        self.key = None
        self.current = None

    def __enter__(self) -> "_ModelPassSpans":
        return self

    def __call__(self, info: dict) -> None:
        if not tracing.enabled() or info.get("state") != "start":
            return
        key = (info.get("model_idx_in_bag", 0), info.get("shift_idx", 0))
        if key == self.key:
            return
        self._end()
        self.key = key
        attributes = {"stemsite.model.index": key[0], "stemsite.model.models": info.get("models", 1)}
        attributes["stemsite.shift"] = key[1]
        self.current = tracing.span("model pass", attributes)
        self.current.__enter__()

    def __exit__(self, *exc) -> None:
        self._end(*exc)

    def _end(self, *exc) -> None:
        if self.current is not None:
            self.current.__exit__(*(exc or (None, None, None)))
            self.current = None


@dataclass(frozen=True)
class _EncodedStem:
    name: str
    path: Path
    preview: Path | None
    peaks: list[float]


def _encode_stem(
    name: str, samples: "torch.Tensor", workdir: Path, rate: int, options: JobOptions
) -> _EncodedStem:
    """The stem in the chosen format, its waveform peaks, and an MP3 preview when the format is lossless."""
    from jobs.engine import separation

    fmt = options.format_choice
    array = samples.numpy()
    peaks = compute_peaks(array, rate, encoder_scale(array))
    path = workdir / f"{name}.{fmt.extension}"
    separation.encode(samples, path, rate, fmt.bits, fmt.as_float, options.mp3_bitrate)
    preview = None
    if fmt.lossless:
        preview = workdir / "previews" / f"{name}.mp3"
        preview.parent.mkdir(exist_ok=True)
        separation.encode(samples, preview, rate, mp3_bitrate=PREVIEW_BITRATE)
    return _EncodedStem(name, path, preview, peaks)


def _store_stems(job: Job, encoded: list[_EncodedStem], report: "_ProgressReporter") -> list[Stem]:
    """Copy stems and previews into storage. If that fails, failing the job removes what was copied."""
    saved = []
    for position, item in enumerate(encoded):
        size = item.path.stat().st_size
        stem = Stem(job=job, name=item.name, position=position, size=size, peaks=item.peaks)
        with item.path.open("rb") as handle:
            stem.file.save(item.path.name, File(handle), save=False)
        if item.preview is not None:
            with item.preview.open("rb") as handle:
                stem.preview.save(item.preview.name, File(handle), save=False)
        saved.append(stem)
        report(0.95 + 0.05 * (position + 1) / len(encoded))
    return saved


def _commit_stems(job: Job, saved: list[Stem]) -> None:
    """List the stored stems and mark the job succeeded together, or neither (and drop the files)."""
    with transaction.atomic():
        succeeded = job.mark_succeeded()
        if succeeded:
            Stem.objects.bulk_create(saved)
    if succeeded:
        queue_job_event(job)
        return
    logger.info("Job %s finished but was canceled or superseded meanwhile; its stems are dropped", job.pk)
    if not Job.objects.filter(pk=job.pk, attempt__gt=job.attempt).exists():
        _remove_stored_stems(job)  # a newer attempt would share the folder


def _remove_stored_stems(job: Job) -> None:
    """Best effort: on a read-only disk or an unreachable bucket the files cannot be removed, but
    no row lists them."""
    try:
        job.delete_stems()
    except STORAGE_EXCEPTIONS as error:
        logger.error("Job %s: could not remove its partial stems: %s", job.pk, error)


def fail_job(job: Job, message: str) -> None:
    """Fail this attempt and remove its files; a canceled, finished or newer attempt is left alone."""
    tracing.failed(message)
    if job.mark_failed(message):
        _remove_stored_stems(job)
        publish_job_state(job)
        queue_job_event(job)


def fail_lost_job(job_id: str, attempt: int, message: str = MSG_WORKER_LOST) -> None:
    """Mark a job whose worker process died mid-run as failed, unless it already finished."""
    job = Job.objects.select_related("owner").filter(pk=job_id, attempt=attempt).first()
    if job is not None and job.status == Job.Status.RUNNING:
        logger.warning("Job %s lost its worker process", job_id)
        fail_job(job, message)
        publish_queue()


def job_stopped(rq_job, connection, *args, **kwargs) -> None:
    """RQ's stop-job killed the run (a cancel): make sure it reads canceled and leaves no stems."""
    job_id, attempt = rq_job.args
    job = Job.objects.select_related("owner").filter(pk=job_id, attempt=attempt).first()
    if job is None:
        return
    job.delete_stems()
    if job.mark_canceled():
        publish_job_state(job)
        queue_job_event(job)
    publish_queue()


def _configure_torch_threads() -> None:
    import torch

    torch.set_num_threads(separation_threads())


def separation_threads() -> int:
    threads = settings.STEMSITE_TORCH_THREADS
    return threads if threads > 0 else len(os.sched_getaffinity(0))


def engine_options(options: JobOptions, device: str):
    """The engine's options for a job's choices, from the site's settings: one place for both."""
    from jobs.engine import separation

    quality = options.quality_choice
    return separation.SeparationOptions(
        shifts=quality.shifts,
        overlap=quality.overlap,
        device=device,
        precision=options.precision,
        engine=settings.STEMSITE_ENGINE,
        engine_cache_dir=str(settings.STEMSITE_ENGINE_CACHE_DIR),
        threads=separation_threads(),
    )


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
        if self.job.set_progress(percent):
            publish_job_state(self.job)


def preload_model(name: str) -> str:
    """Load a model (and the tempo and key analysis) in the worker's parent, so the job forked next
    (and every later one) starts warm.

    Runs single-threaded and on the CPU: no torch thread pool and no CUDA may exist in a parent
    that forks. Returns the sentence saying why the model cannot load, or "" when it loaded.
    """
    import torch

    from jobs.engine import analysis, execution, openvino_runtime, separation

    analysis.preload()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model = separation.load_model(name, settings.STEMSITE_MODEL_REPO, settings.STEMSITE_MODEL_CACHE_SIZE)
    except separation.ModelUnavailable as error:
        logger.warning("Model not preloaded: %s", error)
        return str(error)
    finally:
        torch.set_num_threads(threads)
    if settings.STEMSITE_ENGINE != "torch" and openvino_runtime.installed():
        for network in execution.members(model):
            if openvino_runtime.supports(network):
                openvino_runtime.fingerprint(network)  # once here, not in every work horse
    return ""
