"""Custom mixes: the effective gains of a mixer's settings, one export per distinct mix, its RQ task.

The same gains, practice settings (tempo, pitch, loop) and format on the same job always map to
the same MixExport row (settings_key), so asking twice never renders twice. The task decodes each
stem, sums gain x stem in float32, cuts the loop's span, changes tempo and pitch of the whole mix
with the time-stretch the player runs (jobs/engine/stretch.py: one time map for every stem)
and writes the file with the encoders the stems use; a mix that would clip is turned down as a
whole (demucs' `clip="rescale"`), never hard-limited, so its balance is what the mixer played.
"""

import contextlib
import hashlib
import json
import logging
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import django_rq
import numpy as np
from django.conf import settings
from django.core.files import File
from django.db import IntegrityError, transaction
from redis.exceptions import RedisError
from rq.exceptions import NoSuchJobError
from rq.job import Job as RQJob

from jobs import tracing
from jobs.engine import audio, stretch
from jobs.models import Job, MixExport
from jobs.practice import Practice
from jobs.realtime.events import publish_export_state
from jobs.storage_errors import FULL, READ_ONLY, STORAGE_EXCEPTIONS, UNREACHABLE, storage_problem

logger = logging.getLogger(__name__)

MIX_SAMPLE_RATE = 44100
AS_RECORDED = Practice()  # original tempo and pitch, the whole track
MAX_GAIN = 2.0


@dataclass(frozen=True)
class ExportFormat:
    extension: str
    bits: int
    mp3_bitrate: int = 320


EXPORT_FORMATS = {
    "mp3": ExportFormat("mp3", 16, mp3_bitrate=320),
    "wav": ExportFormat("wav", 24),
    "flac": ExportFormat("flac", 24),
}

MSG_NOT_QUEUED = (
    "The mix could not be queued: processing is paused because the job queue cannot be reached. "
    "Try the export again in a little while."
)
MSG_STORAGE = {
    FULL: "The server ran out of storage space while saving the mix, so it was not kept. Try again later.",
    READ_ONLY: "The server's storage is read-only, so the mix could not be saved. Try again later.",
    UNREACHABLE: "The server's file storage could not be reached, so the mix was not made. Try again later.",
}
MSG_STEM_UNREADABLE = (
    "A stem of this track could not be read back, so the mix was not made. Separate the track again, "
    "then export the mix."
)
MSG_INTERNAL = "The mix failed because of an error on the server. The site's staff can see the details."
MSG_WORKER_LOST = "The worker stopped unexpectedly while mixing. Try the export again."


def effective_gains(gains: dict[str, float], muted: set[str], soloed: set[str]) -> dict[str, float]:
    """What each stem contributes: with any solo only the soloed stems sound (solo wins over mute,
    several solos sum), otherwise a muted stem is silent; every other stem keeps its slider gain."""
    if soloed:
        return {name: gain if name in soloed else 0.0 for name, gain in gains.items()}
    return {name: 0.0 if name in muted else gain for name, gain in gains.items()}


def settings_key(gains: dict[str, float], output_format: str, practice: Practice = AS_RECORDED) -> str:
    """The same mix (gains to 4 decimals, tempo, pitch, loop to 10 ms) in the same format gives the
    same key; a mix at the original tempo and pitch of the whole track keeps the key it always had."""
    canonical = {
        "gains": {name: round(gain, 4) for name, gain in sorted(gains.items())},
        "format": output_format,
    }
    if not practice.is_plain:
        canonical["practice"] = practice.as_dict()
    return hashlib.sha256(json.dumps(canonical, sort_keys=True).encode()).hexdigest()


def request_export(
    job: Job, gains: dict[str, float], output_format: str, practice: Practice = AS_RECORDED
) -> MixExport:
    """The export for these settings: an existing one as it is (a failed one is queued again),
    or a new one queued for a worker."""
    key = settings_key(gains, output_format, practice)
    gains = {name: round(gain, 4) for name, gain in gains.items()}
    try:
        with transaction.atomic():
            export, created = MixExport.objects.get_or_create(
                job=job,
                settings_key=key,
                defaults={"settings": {"gains": gains, **practice.as_dict()}, "output_format": output_format},
            )
    except IntegrityError:  # the same mix asked for twice at once: the other request made it
        export, created = MixExport.objects.get(job=job, settings_key=key), False
    if created or export.requeue():
        enqueue_export(export)
    export.job = job
    return export


def export_rq_id(export_id) -> str:
    """The RQ id of an export's render: one per export, so the reconciler can look it up."""
    return f"mix-export-{export_id}"


def enqueue_export(export: MixExport) -> bool:
    """Queue the render on the short queue, whose own worker never waits behind separations (a mix
    takes seconds); if Redis is away the export fails with a sentence and can simply be asked for
    again, and this returns False.

    An export asked for again reuses its RQ id: the earlier render's record is dropped first, so
    the queue and RQ's registries never hold two renders of one export.
    """
    queue = django_rq.get_queue(settings.STEMSITE_SHORT_QUEUE)
    attributes = {"stemsite.job.id": str(export.job_id), "stemsite.export.id": str(export.pk)}
    with tracing.span("enqueue mix export", attributes, kind="producer"):
        try:
            with contextlib.suppress(NoSuchJobError):
                RQJob.fetch(export_rq_id(export.pk), connection=queue.connection).delete()
            queue.enqueue(
                render_export,
                str(export.pk),
                job_id=export_rq_id(export.pk),
                job_timeout=settings.STEMSITE_TIMEOUT_BASE_SECONDS + settings.STEMSITE_MAX_DURATION_SECONDS,
                result_ttl=3600,
                failure_ttl=7 * 24 * 3600,
                description=f"mix export {export.pk}",
                meta={"job": str(export.job_id), **tracing.rq_meta()},
            )
        except (RedisError, OSError) as error:
            logger.warning("Could not queue mix export %s: %s", export.pk, error)
            tracing.failed(MSG_NOT_QUEUED)
            export.mark_failed(MSG_NOT_QUEUED)
            return False
    return True


def render_export(export_id: str) -> None:
    """RQ entry point: render one export. Every way out leaves it succeeded or failed, never running."""
    with tracing.span("render mix", {"stemsite.export.id": export_id}):
        _render_export(export_id)


def _render_export(export_id: str) -> None:
    export = MixExport.objects.select_related("job__owner").filter(pk=export_id).first()
    if export is None or not export.mark_running():
        logger.info("Skipping mix export %s: it is gone or no longer queued", export_id)
        return
    publish_export_state(export)
    try:
        name, size = _render(export)
    except audio.AudioError as error:
        logger.error("Mix export %s: a stem could not be decoded: %s", export.pk, error)
        _fail(export, MSG_STEM_UNREADABLE)
    except Exception as error:
        problem = storage_problem(error)
        if problem is None:
            logger.exception("Mix export %s failed", export.pk)
            _fail(export, MSG_INTERNAL)
            raise
        logger.error("Mix export %s: its files could not be read or stored: %s", export.pk, error)
        _fail(export, MSG_STORAGE[problem])
    else:
        if export.mark_succeeded(name, size):
            with tracing.span("publish", {"stemsite.export.status": export.status}):
                publish_export_state(export)
        else:  # deleted or failed meanwhile: the file would belong to nothing
            export.file.storage.delete(name)


def fail_lost_export(export_id: str) -> None:
    """An export whose worker process died mid-render is failed, so it can be asked for again."""
    export = MixExport.objects.select_related("job__owner").filter(pk=export_id).first()
    if export is not None:
        _fail(export, MSG_WORKER_LOST)


def mix_stems(
    paths_and_gains: list[tuple[Path, float]], max_seconds: float, timeout: float, on_stem=lambda done: None
) -> np.ndarray:
    """Sum gain x stem as float32 `[2, samples]` at 44.1 kHz; stems of unequal length are zero-padded.

    One decoded stem and the sum are in memory at a time; `on_stem(n)` runs after the n-th stem.
    """
    mix = np.zeros((2, 0), dtype=np.float32)
    for done, (path, gain) in enumerate(paths_and_gains, start=1):
        with tracing.span("decode", {"stemsite.gain": gain}):
            wav, _ = audio.decode(str(path), max_seconds, timeout, sample_rate=MIX_SAMPLE_RATE, channels=2)
        if wav.shape[1] > mix.shape[1]:
            mix = np.pad(mix, ((0, 0), (0, wav.shape[1] - mix.shape[1])))
        mix[:, : wav.shape[1]] += np.float32(gain) * wav
        del wav
        on_stem(done)
    return mix


def _render(export: MixExport) -> tuple[str, int]:
    """Decode, sum and encode in a temporary folder, then store: the stored file is always whole."""
    job = export.job
    gains = export.settings["gains"]
    stems = list(job.stems.all())
    sounding = [stem for stem in stems if gains.get(stem.name, 0.0)] or stems[:1]  # silence keeps the length
    fmt = EXPORT_FORMATS[export.output_format]
    limit = settings.STEMSITE_MAX_DURATION_SECONDS + 60
    with tempfile.TemporaryDirectory(prefix="stemsite-mix-") as workdir:
        inputs = []
        with tracing.span("fetch stems", {"stemsite.stems": len(sounding)}):
            for position, stem in enumerate(sounding):
                local = Path(workdir) / f"{position}{PurePosixPath(stem.file.name).suffix}"
                with stem.file.open("rb") as src, local.open("wb") as dst:
                    shutil.copyfileobj(src, dst, 1024 * 1024)
                inputs.append((local, float(gains.get(stem.name, 0.0))))

        def decoded(done: int) -> None:
            if export.set_progress(80 * done // len(inputs)):
                publish_export_state(export)

        mix = mix_stems(inputs, limit, timeout=max(60, limit), on_stem=decoded)
        practice = export.practice
        with tracing.span(
            "practice", {"stemsite.tempo": practice.tempo, "stemsite.semitones": practice.semitones}
        ):
            mix = apply_practice(mix, MIX_SAMPLE_RATE, practice)
        if export.set_progress(85):
            publish_export_state(export)
        target = Path(workdir) / f"mix.{fmt.extension}"
        import torch  # here, in the work horse: web processes import this module too

        from jobs.engine import separation

        with tracing.span("encode", {"stemsite.format": export.output_format}):
            separation.encode(
                torch.from_numpy(mix), target, MIX_SAMPLE_RATE, fmt.bits, False, fmt.mp3_bitrate
            )
        del mix
        if export.set_progress(90):
            publish_export_state(export)
        size = target.stat().st_size
        with tracing.span("store", {"stemsite.bytes": size}):
            return _store(export, target), size


EDGE_FADE_SECONDS = 0.005  # a loop cut mid-note starts and ends with this fade instead of a click


def apply_practice(mix: np.ndarray, rate: int, practice: Practice) -> np.ndarray:
    """The loop's span of `[2, samples]` (faded at its cut edges), at the practice tempo and pitch."""
    if practice.loop is not None:
        start, end = (min(mix.shape[1], int(round(seconds * rate))) for seconds in practice.loop)
        mix = mix[:, start:end].copy()
        fade = np.linspace(0.0, 1.0, min(int(EDGE_FADE_SECONDS * rate), mix.shape[1] // 2), dtype=np.float32)
        if len(fade):
            mix[:, : len(fade)] *= fade
            mix[:, -len(fade) :] *= fade[::-1]
    if practice.changes_sound and mix.shape[1]:
        mix = stretch.stretch(mix, rate, practice.tempo / 100, practice.semitones)
    return mix


def _store(export: MixExport, target: Path) -> str:
    """Save the finished file under the export's own name; a cut-off copy (disk full) is removed."""
    storage = export.file.storage
    name = export.file.field.generate_filename(export, target.name)
    storage.delete(name)  # a previous attempt's leftover would push this one to another name
    try:
        with target.open("rb") as handle:
            return storage.save(name, File(handle))
    except STORAGE_EXCEPTIONS:
        with contextlib.suppress(*STORAGE_EXCEPTIONS):  # a read-only disk keeps it; no row lists it
            storage.delete(name)
        raise


def _fail(export: MixExport, message: str) -> None:
    tracing.failed(message)
    if export.mark_failed(message):
        publish_export_state(export)
