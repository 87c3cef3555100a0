"""The import phase of a job, on its own RQ queue: download the link, check it as an upload, queue it.

A job made from a link starts as downloading. A worker of the imports queue downloads it through
the import proxy (jobs/imports/), pushing "Downloading 40%" to the job's page, then hands the file
to the upload form's own checks (forms.check_upload) and the owner's limits, and queues it for
separation (submission.accept_import). Downloads never wait behind separations, and a slow site
never holds up mix exports or webhooks. Every way out removes the download's folder; a download
whose worker vanished is recovered by the reconciler (jobs.background.reconcile).
"""

import logging
import shutil
import time
from pathlib import Path

import django_rq
from django import forms
from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from redis.exceptions import RedisError
from rq.job import Callback
from rq.timeouts import JobTimeoutException

from jobs import tracing
from jobs.background.tasks import fail_job
from jobs.forms import DECODE_CHECK_TIMEOUT, check_upload
from jobs.imports import failures, fetch, sites
from jobs.imports.failures import Downloaded, ImportCanceled, ImportFailed
from jobs.imports.proxy import FetchProxy
from jobs.limits import LimitExceeded
from jobs.models import Job
from jobs.realtime.events import publish_job_row, publish_job_state
from jobs.submission import UploadNotStored, accept_import
from jobs.upload_limits import max_file_bytes

logger = logging.getLogger(__name__)

# Pages and manifests come through the proxy too: room for them beside the track itself.
PAGE_ALLOWANCE_BYTES = 16 * 1024 * 1024
# The checks after the download (probe and full decode) get their own time inside the RQ limit.
CHECK_SECONDS = DECODE_CHECK_TIMEOUT + 60

MSG_DOWNLOAD_LOST = (
    "The worker stopped unexpectedly while downloading this track. Try again; the download starts afresh."
)
MSG_DOWNLOAD_SHUT_DOWN = (
    "The worker was shut down while downloading this track (the server was stopped or restarted). "
    "Try again to download it afresh."
)
MSG_INTERNAL = "The import failed because of an error on the server. The site's staff can see the details."


def failure_sentence(failure: ImportFailed) -> str:
    """What a person reads when an import fails, for every kind of failure."""
    limit_mb = settings.STEMSITE_MAX_UPLOAD_MB
    limit_minutes = settings.STEMSITE_MAX_DURATION_SECONDS / 60
    timeout = settings.STEMSITE_IMPORT_TIMEOUT_SECONDS
    allowed = f"{timeout // 60} minutes" if timeout >= 120 else f"{timeout} seconds"
    sentences = {
        failures.NOT_FOUND: "Nothing was found at this link (the site answered “not found”). Check the link.",
        failures.NOT_AUDIO: (
            "No audio we can use was found at this link. Link to an audio file (MP3, WAV, FLAC, OGG, "
            "Opus or M4A), or to the page of one track."
        ),
        failures.WEB_PAGE: (
            "This link leads to a web page (or a stream's playlist), not to an audio file, and this site "
            "imports only direct links to audio files. Link to the file itself, or download the track "
            "and upload it."
        ),
        failures.UNSUPPORTED: (
            "This site is not one we can import from, and the link does not lead to an audio file. "
            "Download the track and upload the file."
        ),
        failures.PRIVATE: (
            f"The link led to a private, loopback or reserved address ({failure.detail}); this site "
            "only imports from public addresses."
        ),
        failures.BAD_LINK: (
            "The link redirected to an address this site does not fetch (not http or https, or with a "
            "user name or password in it)."
        ),
        failures.TOO_LONG: (
            f"The track is {failure.seconds / 60:.0f} minutes long; the limit is {limit_minutes:.0f} minutes."
        ),
        failures.TOO_LARGE: (
            f"The file at this link is larger than the upload limit of {limit_mb} MB, so the download "
            "was stopped."
        ),
        failures.REFUSED: (
            "The site refused to give us this track: it may need a login, an age check or a "
            "subscription, or not be available here. Download it yourself and upload the file."
        ),
        failures.NETWORK: (
            "The site could not be reached, or stopped answering: the network may be down. Try again later."
        ),
        failures.TIMEOUT: (
            f"The download took longer than the allowed {allowed} and was stopped. Try again later, "
            "or download the track yourself and upload it."
        ),
        failures.PLAYLIST: (
            "This link is a playlist or a channel. Import one track at a time: open the track and "
            "copy its own link."
        ),
        failures.LIVE: "This link is a live stream, which cannot be imported. Link to a recording.",
    }
    return sentences[failure.kind]


def import_timeout() -> int:
    """RQ's limit for one import: the download's own limit, then time for the checks."""
    return settings.STEMSITE_IMPORT_TIMEOUT_SECONDS + CHECK_SECONDS


def enqueue_import(job: Job) -> bool:
    """Queue the job's download; False if Redis is unreachable (the reconciler queues it later)."""
    attributes = {"stemsite.job.id": str(job.pk), "stemsite.job.attempt": job.attempt}
    with tracing.span("enqueue import", attributes, kind="producer", link=job.trace_parent):
        try:
            django_rq.get_queue(settings.STEMSITE_IMPORT_QUEUE).enqueue(
                import_track, str(job.pk), job.attempt,
                job_id=job.import_rq_id, job_timeout=import_timeout(), result_ttl=3600,
                failure_ttl=7 * 24 * 3600, description=f"import {job.pk} (attempt {job.attempt})",
                meta={"job": str(job.pk), **tracing.rq_meta(job.trace_parent)},
                on_stopped=Callback(import_stopped),
            )  # fmt: skip
        except (RedisError, OSError) as error:
            logger.warning("Could not queue the import of job %s; the reconciler will: %s", job.pk, error)
            tracing.failed(tracing.QUEUE_UNREACHABLE)
            return False
        publish_job_row(job)
    return True


def import_folder(job_id, attempt: int) -> Path:
    """Where one attempt's download lives, removed whatever happens."""
    return Path(settings.STEMSITE_IMPORT_DIR) / f"{job_id}-{attempt}"


def import_track(job_id: str, attempt: int = 1) -> None:
    """Download one import attempt and hand it on. Every way out leaves it queued or finished."""
    job = Job.objects.select_related("owner").filter(pk=job_id, attempt=attempt).first()
    if job is None or job.status != Job.Status.DOWNLOADING:
        logger.info("Skipping import %s attempt %s: gone or no longer downloading", job_id, attempt)
        return
    folder = import_folder(job.pk, attempt)
    folder.mkdir(parents=True, exist_ok=True)
    publish_job_state(job)
    try:
        with tracing.span("download", {"url.full": job.source_url}):
            downloaded = _download(job, folder)
        with _DownloadedFile(downloaded) as download:
            with tracing.span("check upload", {"stemsite.bytes": download.size or 0}):
                accepted = check_upload(download)
            with tracing.span("store upload", {"stemsite.bytes": download.size or 0}):
                carrier = accept_import(job, accepted)
    except ImportCanceled:
        logger.info("Import %s was canceled while downloading", job.pk)
    except ImportFailed as failure:
        logger.info("Import %s failed: %s", job.pk, failure)
        fail_job(job, failure_sentence(failure))
    except forms.ValidationError as error:
        fail_job(job, error.messages[0])
    except (LimitExceeded, UploadNotStored) as error:
        fail_job(job, str(error))
    except JobTimeoutException:
        fail_job(job, failure_sentence(ImportFailed(failures.TIMEOUT)))
    except Exception:
        logger.exception("Import %s failed", job.pk)
        fail_job(job, MSG_INTERNAL)
        raise
    else:
        job.refresh_from_db()
        publish_job_state(job)
        if carrier.pk != job.pk:
            publish_job_row(carrier)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _download(job: Job, folder: Path) -> Downloaded:
    """The link's track in `folder`, through the proxy: yt-dlp for a page of a site when sites are on."""
    max_bytes = max_file_bytes()
    report = _DownloadProgress(job)
    allowed = settings.STEMSITE_TEST_FETCH_ALLOWED
    seconds = settings.STEMSITE_IMPORT_TIMEOUT_SECONDS
    with FetchProxy(allowed, max_bytes + PAGE_ALLOWANCE_BYTES, seconds) as proxy:
        sites_on = settings.STEMSITE_URL_IMPORT == "sites"
        if not (sites_on and sites.is_site_page(job.source_url)):
            try:
                return fetch.download(job.source_url, folder, proxy, max_bytes, report)
            except ImportFailed as failure:
                if failure.kind != failures.WEB_PAGE or not sites_on:
                    raise
        return sites.download(
            job.source_url, folder, proxy, max_bytes, settings.STEMSITE_MAX_DURATION_SECONDS, report,
            check_seconds=DECODE_CHECK_TIMEOUT,
        )  # fmt: skip


class _DownloadedFile(UploadedFile):
    """The downloaded file as the upload checks and storage take it: a named file on disk."""

    def __init__(self, downloaded: Downloaded):
        path = Path(downloaded.path)
        super().__init__(path.open("rb"), downloaded.name, None, path.stat().st_size)
        self.path = str(path)

    def temporary_file_path(self) -> str:
        return self.path


class _DownloadProgress:
    """Writes and pushes the download's percent at most every STEMSITE_PROGRESS_INTERVAL seconds;
    answers False once the job is no longer downloading (canceled), which stops the download."""

    def __init__(self, job: Job):
        self.job = job
        self.last_time = 0.0
        self.last_percent = -1

    def __call__(self, received: int, total: int) -> bool:
        now = time.monotonic()
        if now - self.last_time < settings.STEMSITE_PROGRESS_INTERVAL:
            return True
        self.last_time = now
        percent = min(99, int(100 * received / total)) if total else 0
        if percent == self.last_percent:  # nothing to write: only ask whether it is still wanted
            downloading = Job.objects.filter(pk=self.job.pk, status=Job.Status.DOWNLOADING)
            return downloading.filter(attempt=self.job.attempt).exists()
        self.last_percent = percent
        if not self.job.set_download_progress(percent):
            return False
        publish_job_state(self.job)
        return True


def fail_lost_import(job_id: str, attempt: int, message: str = MSG_DOWNLOAD_LOST) -> None:
    """A download whose work horse died (killed, or a shutdown): failed, and its folder removed."""
    shutil.rmtree(import_folder(job_id, attempt), ignore_errors=True)
    job = Job.objects.select_related("owner").filter(pk=job_id, attempt=attempt).first()
    if job is not None and job.status == Job.Status.DOWNLOADING:
        logger.warning("Import %s lost its worker process", job_id)
        fail_job(job, message)


def import_stopped(rq_job, connection, *args, **kwargs) -> None:
    """RQ stopped the download (a cancel): it reads canceled, and nothing of it stays on disk."""
    job_id, attempt = rq_job.args
    shutil.rmtree(import_folder(job_id, attempt), ignore_errors=True)
    job = Job.objects.select_related("owner").filter(pk=job_id, attempt=attempt).first()
    if job is not None and job.mark_canceled():
        publish_job_state(job)
