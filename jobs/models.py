"""A Job is one uploaded (or imported) track and its separation; a Stem is one separated output file;
a ShareLink lets people without an account play a finished job."""

import unicodedata
import uuid
from pathlib import PurePosixPath

from django.conf import settings
from django.db import IntegrityError, models, transaction
from django.db.models import Q
from django.urls import reverse
from django.utils import timezone
from django.utils.text import slugify

from jobs.options import ENGINE_LABELS, PRECISIONS, JobOptions, stem_label
from jobs.practice import Practice, mix_words


def upload_label(filename: str) -> str:
    """The user's file name as a display label only (the stored file has a server-made key).

    The last path part, without control or invisible formatting characters (PostgreSQL refuses
    NUL; a right-to-left override disguises the extension), at most 255 characters with the
    extension kept. Templates escape it wherever it is shown.
    """
    name = filename.replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(
        char for char in unicodedata.normalize("NFC", name) if unicodedata.category(char)[0] != "C"
    )
    name = " ".join(name.split())
    if len(name) > LABEL_LENGTH:
        stem, dot, ext = name.rpartition(".")
        tail = f".{ext}" if dot and len(ext) <= 8 else ""
        name = (stem if tail else name)[: LABEL_LENGTH - len(tail)] + tail
    return name or "audio"


LABEL_LENGTH = 255


def input_upload_to(job: "Job", filename: str) -> str:
    """Server-chosen key: the user's name survives only as a slug, never as a path."""
    name = PurePosixPath(filename.replace("\\", "/")).name
    stem, dot, ext = name.rpartition(".")
    if not dot:
        stem, ext = ext, ""
    safe_stem = slugify(stem)[:60] or "audio"
    safe_ext = slugify(ext)[:8]
    return f"jobs/{job.pk}/input/{safe_stem}.{safe_ext}" if safe_ext else f"jobs/{job.pk}/input/{safe_stem}"


def stem_upload_to(stem: "Stem", filename: str) -> str:
    ext = PurePosixPath(filename).suffix.lstrip(".")
    return f"jobs/{stem.job_id}/stems/{slugify(stem.name)}.{ext}"


def preview_upload_to(stem: "Stem", filename: str) -> str:
    ext = PurePosixPath(filename).suffix.lstrip(".")
    return f"jobs/{stem.job_id}/previews/{slugify(stem.name)}.{ext}"


def export_upload_to(export: "MixExport", filename: str) -> str:
    ext = PurePosixPath(filename).suffix.lstrip(".")
    return f"jobs/{export.job_id}/exports/{export.pk}.{ext}"


class IdenticalJobActive(Exception):
    """A retry would make a second active job for the same audio and options."""

    def __init__(self, job: "Job"):
        super().__init__(f"An identical job ({job.pk}) is already queued or running.")
        self.job = job


class JobQuerySet(models.QuerySet):
    def for_user(self, user) -> "JobQuerySet":
        """What a user may see: their own jobs, or every job for staff."""
        if not user.is_authenticated:
            return self.none()
        if user.is_staff:
            return self
        return self.filter(owner=user)

    def listed(self) -> "JobQuerySet":
        """Jobs as lists show them: an import that turned out to be an existing job is that job."""
        return self.filter(duplicate_of__isnull=True)

    def as_rows(self) -> "JobQuerySet":
        """Only what a list row shows (templates/jobs/job_list.html#job-row): the job list reads 25
        rows on every visit, and the beats, messages and URLs it does not show cost their parsing."""
        return self.only(
            "id", "owner_id", "original_name", "model_name", "options", "status", "progress",
            "created_at", "analysed_at", "tempo_bpm", "key", "duplicate_of_id",
        )  # fmt: skip


class Job(models.Model):
    class Status(models.TextChoices):
        DOWNLOADING = "downloading", "Downloading"
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"
        CANCELED = "canceled", "Canceled"

    FINISHED = (Status.SUCCEEDED, Status.FAILED, Status.CANCELED)
    ACTIVE = (Status.DOWNLOADING, Status.QUEUED, Status.RUNNING)

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="jobs")
    original_name = models.CharField(max_length=255)
    input_file = models.FileField(upload_to=input_upload_to, max_length=255)
    content_hash = models.CharField(
        max_length=64, blank=True, db_index=True, help_text="SHA-256 of the upload"
    )
    model_name = models.CharField(max_length=64)
    options = models.JSONField(default=dict, blank=True, help_text="quality, output format, two-stem mode")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED, db_index=True)
    progress = models.PositiveSmallIntegerField(default=0)
    attempt = models.PositiveIntegerField(default=1, help_text="bumped by each retry; fences stale writes")
    recoveries = models.PositiveSmallIntegerField(
        default=0, help_text="times a lost run (its worker vanished) was queued again automatically"
    )
    input_size = models.PositiveBigIntegerField(default=0, help_text="bytes of the uploaded file")
    callback_url = models.URLField(
        max_length=500, blank=True, help_text="receives a signed POST when the job finishes (API)"
    )
    dedupe_key = models.CharField(
        max_length=64,
        blank=True,
        help_text="hash of the audio and the options: one active job per identical upload and owner",
    )
    source_url = models.URLField(
        max_length=2000, blank=True, help_text="the link the track was imported from (empty for uploads)"
    )
    source_key = models.CharField(
        max_length=64, blank=True, help_text="hash of the link and the options: one active import per link"
    )
    duplicate_of = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="duplicates",
        help_text="an import whose audio this owner had already separated with these options: that job",
    )
    error_message = models.TextField(blank=True)
    duration_seconds = models.FloatField(null=True, blank=True)
    engine = models.CharField(
        max_length=16, blank=True, help_text="what ran the model: openvino or pytorch (set when it starts)"
    )
    arithmetic = models.CharField(
        max_length=8, blank=True, help_text="the arithmetic it ran in: fp32, bf16 or fp16"
    )
    tempo_bpm = models.FloatField(
        null=True, blank=True, help_text="measured on the drums stem; empty: no steady tempo, or not analysed"
    )
    beats = models.JSONField(default=list, blank=True, help_text="beat times in seconds, from the drums stem")
    key = models.CharField(
        max_length=16, blank=True, db_index=True, help_text='e.g. "A minor", from the harmonic stems'
    )
    analysed_at = models.DateTimeField(
        null=True, blank=True, help_text="when tempo, beats and key were measured; empty: not yet"
    )
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    queued_at = models.DateTimeField(default=timezone.now, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    trace_parent = models.CharField(
        max_length=55,
        blank=True,
        editable=False,
        help_text="W3C traceparent of the request that submitted it (tracing on): later attempts link to it",
    )

    objects = JobQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["owner", "dedupe_key"],
                condition=models.Q(status__in=("queued", "running")) & ~models.Q(dedupe_key=""),
                name="one_active_job_per_identical_upload",
            ),
            models.UniqueConstraint(
                fields=["owner", "source_key"],
                condition=models.Q(status__in=("downloading", "queued", "running"))
                & ~models.Q(source_key=""),
                name="one_active_import_per_link",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.original_name} ({self.get_status_display()})"

    def get_absolute_url(self) -> str:
        return reverse("job_detail", args=[self.pk])

    @property
    def is_finished(self) -> bool:
        return self.status in self.FINISHED

    @property
    def job_options(self) -> JobOptions:
        return JobOptions.from_dict({**self.options, "model": self.model_name})

    @property
    def engine_description(self) -> str:
        """How the stems are computed, for people comparing two jobs: "htdemucs · half precision
        (bf16) · OpenVINO"; the arithmetic and engine appear once the worker has chosen them."""
        asked = self.job_options.precision_choice
        if not self.arithmetic:
            return f"{self.model_name} · {asked.label.lower()}"
        ran = PRECISIONS["full" if self.arithmetic == "fp32" else "half"]
        parts = [self.model_name, f"{ran.label.lower()} ({self.arithmetic})"]
        parts.append(ENGINE_LABELS.get(self.engine, self.engine))
        if ran.name != asked.name:
            parts.append(f"{asked.label.lower()} was not available on the worker")
        return " · ".join(parts)

    @property
    def display_name(self) -> str:
        """The user's file name without its extension, for labels and download names."""
        stem, dot, _ = self.original_name.rpartition(".")
        return stem if dot and stem else self.original_name

    @property
    def rq_job_id(self) -> str:
        return f"separate-{self.pk}-{self.attempt}"

    @property
    def import_rq_id(self) -> str:
        return f"import-{self.pk}-{self.attempt}"

    @property
    def is_import(self) -> bool:
        return bool(self.source_url)

    def _transition(self, allowed: tuple, **fields) -> bool:
        """Write `fields` only if the job is still in an `allowed` status and on this attempt.

        The web process and workers write the same row; this fence makes a late write from a
        stopped or superseded run a no-op instead of overwriting a newer state.
        """
        updated = Job.objects.filter(pk=self.pk, status__in=allowed, attempt=self.attempt).update(**fields)
        if updated:
            for name, value in fields.items():
                setattr(self, name, value)
        return bool(updated)

    def mark_running(self) -> bool:
        return self._transition(
            (self.Status.QUEUED,),
            status=self.Status.RUNNING,
            progress=0,
            error_message="",
            engine="",
            arithmetic="",
            tempo_bpm=None,
            beats=[],
            key="",
            analysed_at=None,
            started_at=timezone.now(),
            finished_at=None,
        )

    def record_engine(self, engine: str, arithmetic: str) -> bool:
        """What this run computes with (jobs/engine/execution.py), written as it starts."""
        return self._transition((self.Status.RUNNING,), engine=engine, arithmetic=arithmetic)

    def set_progress(self, percent: int) -> bool:
        return self._transition((self.Status.RUNNING,), progress=max(0, min(100, int(percent))))

    def record_analysis(self, tempo_bpm: float | None, beats: list[float], key: str) -> bool:
        """Tempo, beats and key as measured (jobs/engine/analysis.py): by the run that separated the
        job, or later by `manage.py analyse_tracks` on a finished one."""
        return self._transition(
            (self.Status.RUNNING, self.Status.SUCCEEDED), tempo_bpm=tempo_bpm, beats=beats, key=key,
            analysed_at=timezone.now(),
        )  # fmt: skip

    @property
    def tempo_and_key(self) -> str:
        """ "122 BPM · A minor" for people; "no steady tempo" when the beat was not clear, "" before
        any analysis."""
        if self.analysed_at is None:
            return ""
        parts = [f"{self.tempo_bpm:.0f} BPM" if self.tempo_bpm else "no steady tempo"]
        if self.key:
            parts.append(self.key)
        return " · ".join(parts)

    def set_download_progress(self, percent: int) -> bool:
        """False once the import is no longer downloading (canceled): the download then stops."""
        return self._transition((self.Status.DOWNLOADING,), progress=max(0, min(100, int(percent))))

    def finish_download(self, **fields) -> bool:
        """The downloaded track passed the upload checks and is stored: queue it for separation.

        `fields` are what the download found (the stored input, its hash and size, the length,
        the name). Raises IntegrityError if the same audio with the same options is already active.
        """
        return self._transition(
            (self.Status.DOWNLOADING,), status=self.Status.QUEUED, progress=0, queued_at=timezone.now(),
            **fields,
        )  # fmt: skip

    def merge_into(self, existing: "Job") -> bool:
        """This import's audio was already separated (or is on its way) as `existing`: become a
        pointer to it, finished, so no second copy is kept or listed."""
        return self._transition(
            (self.Status.DOWNLOADING,), status=self.Status.CANCELED, progress=0, duplicate_of=existing,
            finished_at=timezone.now(),
        )  # fmt: skip

    def mark_succeeded(self) -> bool:
        return self._transition(
            (self.Status.RUNNING,), status=self.Status.SUCCEEDED, progress=100, finished_at=timezone.now()
        )

    def mark_failed(self, message: str) -> bool:
        return self._transition(
            self.ACTIVE, status=self.Status.FAILED, error_message=message, finished_at=timezone.now()
        )

    def mark_canceled(self) -> bool:
        return self._transition(self.ACTIVE, status=self.Status.CANCELED, finished_at=timezone.now())

    def recover_lost_download(self) -> bool:
        """Start the download again as a new attempt: its worker vanished mid-download."""
        lost = Job.objects.filter(pk=self.pk, status=self.Status.DOWNLOADING, attempt=self.attempt)
        updated = lost.update(
            progress=0,
            attempt=models.F("attempt") + 1,
            recoveries=models.F("recoveries") + 1,
            queued_at=timezone.now(),
        )
        if updated:
            self.refresh_from_db()
        return bool(updated)

    def recover_lost_run(self) -> bool:
        """Queue a new attempt of a run whose worker vanished; the lost attempt's writes are fenced off.

        One update bumps both counters, so two reconcilers (or a late write from the lost run)
        can never recover the same attempt twice.
        """
        lost = Job.objects.filter(pk=self.pk, status=self.Status.RUNNING, attempt=self.attempt)
        updated = lost.update(
            status=self.Status.QUEUED,
            progress=0,
            attempt=models.F("attempt") + 1,
            recoveries=models.F("recoveries") + 1,
            started_at=None,
        )
        if updated:
            self.refresh_from_db()
        return bool(updated)

    def requeue(self) -> bool:
        """Start a new attempt of a failed or canceled job; the old attempt's writes are fenced off.
        An import whose download never completed downloads again.

        Raises IdenticalJobActive if the owner has the same upload (or link) with the same options
        active already (the database allows only one).
        """
        retryable = Job.objects.filter(
            pk=self.pk, status__in=(self.Status.FAILED, self.Status.CANCELED), duplicate_of__isnull=True
        )
        status = self.Status.DOWNLOADING if self.is_import and not self.input_file else self.Status.QUEUED
        try:
            with transaction.atomic():
                updated = retryable.update(
                    status=status,
                    progress=0,
                    error_message="",
                    attempt=models.F("attempt") + 1,
                    queued_at=timezone.now(),
                    started_at=None,
                    finished_at=None,
                )
        except IntegrityError:
            active = self.identical_active_job()
            if active is None:
                raise
            raise IdenticalJobActive(active) from None
        if updated:
            self.refresh_from_db()
        return bool(updated)

    def identical_active_job(self) -> "Job | None":
        """This owner's other active job for the same audio (or link) and options, if any."""
        same = Q(pk__in=[])
        if self.dedupe_key:
            same |= Q(dedupe_key=self.dedupe_key)
        if self.source_key:
            same |= Q(source_key=self.source_key)
        active = Job.objects.filter(same, owner_id=self.owner_id, status__in=self.ACTIVE)
        return active.exclude(pk=self.pk).first()

    def delete_with_files(self) -> None:
        """Remove the job, its stems, its mix exports and every stored file: nothing of the upload stays."""
        self.delete_stems()
        self.delete_exports()
        self.delete_input()
        self.delete()

    def delete_input(self) -> None:
        """Remove the stored upload, and the partial file of a save that failed part way (no name yet)."""
        self.input_file.delete(save=False)
        self._delete_folder("input")

    def delete_stems(self) -> None:
        """Remove every stem row, file and preview, including files a killed run wrote without a row."""
        for stem in self.stems.all():
            stem.file.delete(save=False)
            if stem.preview:
                stem.preview.delete(save=False)
            stem.delete()
        self._delete_folder("stems")
        self._delete_folder("previews")

    def delete_exports(self) -> None:
        """Remove every mix export row and file, including files of a render that was cut off."""
        for export in self.exports.all():
            if export.file:
                export.file.delete(save=False)
            export.delete()
        self._delete_folder("exports")

    def _delete_folder(self, kind: str) -> None:
        storage = self.input_file.storage
        folder = f"jobs/{self.pk}/{kind}"
        try:
            _, leftovers = storage.listdir(folder)
        except FileNotFoundError:
            return
        for name in leftovers:
            storage.delete(f"{folder}/{name}")


class Stem(models.Model):
    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="stems")
    name = models.CharField(max_length=32)
    position = models.PositiveSmallIntegerField(default=0, help_text="the model's order of stems")
    file = models.FileField(upload_to=stem_upload_to, max_length=255)
    size = models.PositiveBigIntegerField(default=0)
    peaks = models.JSONField(
        default=list, blank=True, help_text="loudest |sample| per short window, 0..1, for the waveform"
    )
    preview = models.FileField(
        upload_to=preview_upload_to, max_length=255, blank=True,
        help_text="a compressed copy the player streams when the stem itself is lossless",
    )  # fmt: skip

    class Meta:
        ordering = ["job", "position", "name"]
        constraints = [models.UniqueConstraint(fields=["job", "name"], name="unique_stem_per_job")]

    def __str__(self) -> str:
        return f"{self.job.original_name}: {self.name}"

    def get_absolute_url(self) -> str:
        return reverse("stem_file", args=[self.job_id, self.name])

    @property
    def extension(self) -> str:
        return PurePosixPath(self.file.name).suffix.lstrip(".")

    @property
    def label(self) -> str:
        return stem_label(self.name)

    @property
    def download_name(self) -> str:
        return f"{self.job.display_name} - {self.name}.{self.extension}"


class MixExport(models.Model):
    """One custom mix of a job's stems (per-stem gains), rendered to one file by a worker."""

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Mixing"
        SUCCEEDED = "succeeded", "Ready"
        FAILED = "failed", "Failed"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="exports")
    settings_key = models.CharField(
        max_length=64, help_text="hash of the gains and format: same mix, same file"
    )
    settings = models.JSONField(
        default=dict, help_text="effective gain per stem (after mute and solo); tempo, semitones, loop if set"
    )
    output_format = models.CharField(max_length=16)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED, db_index=True)
    progress = models.PositiveSmallIntegerField(default=0)
    error_message = models.TextField(blank=True)
    file = models.FileField(upload_to=export_upload_to, max_length=255, blank=True)
    size = models.PositiveBigIntegerField(default=0)
    created_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["job", "settings_key"], name="one_export_per_mix_settings")
        ]

    def __str__(self) -> str:
        return f"{self.job.original_name}: mix ({self.get_status_display()})"

    FINISHED = (Status.SUCCEEDED, Status.FAILED)

    def get_absolute_url(self) -> str:
        return reverse("export_file", args=[self.job_id, self.pk])

    @property
    def is_finished(self) -> bool:
        return self.status in self.FINISHED

    @property
    def practice(self) -> Practice:
        return Practice.from_dict(self.settings)

    @property
    def description(self) -> str:
        """What the file holds: "no vocals - 85% -2st", "mix"."""
        return " - ".join(filter(None, [mix_words(self.settings.get("gains", {})), self.practice.describe()]))

    @property
    def download_name(self) -> str:
        """ "Song - no vocals - 85% -2st.mp3": the mutes and solos, then tempo, pitch and loop."""
        return f"{self.job.display_name} - {self.description}.{self.output_format}"

    def _transition(self, allowed: tuple, **fields) -> bool:
        """Write `fields` only if the export is still in an `allowed` status (see Job._transition)."""
        updated = MixExport.objects.filter(pk=self.pk, status__in=allowed).update(**fields)
        if updated:
            for name, value in fields.items():
                setattr(self, name, value)
        return bool(updated)

    def mark_running(self) -> bool:
        return self._transition((self.Status.QUEUED,), status=self.Status.RUNNING, progress=0)

    def set_progress(self, percent: int) -> bool:
        return self._transition((self.Status.RUNNING,), progress=max(0, min(100, int(percent))))

    def mark_succeeded(self, name: str, size: int) -> bool:
        """List the stored file and finish together: a ready export always has its whole file."""
        return self._transition(
            (self.Status.RUNNING,), status=self.Status.SUCCEEDED, progress=100, file=name, size=size,
            finished_at=timezone.now(),
        )  # fmt: skip

    def mark_failed(self, message: str) -> bool:
        return self._transition(
            (self.Status.QUEUED, self.Status.RUNNING), status=self.Status.FAILED, error_message=message,
            finished_at=timezone.now(),
        )  # fmt: skip

    def requeue(self) -> bool:
        """Run a failed export again (the same settings: the row is reused, not duplicated)."""
        return self._transition(
            (self.Status.FAILED,), status=self.Status.QUEUED, progress=0, error_message="", finished_at=None
        )


class PlayerSettings(models.Model):
    """How one user last left one job's player (levels, mutes, solos, tempo, pitch, loop, click),
    so opening the page again picks up where they stopped. Shape: jobs/player_settings.py."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="player_settings")
    values = models.JSONField(default=dict, blank=True)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "job"], name="one_player_settings_per_user_job")
        ]

    def __str__(self) -> str:
        return f"player settings of {self.user} for {self.job.original_name}"


class ApiToken(models.Model):
    """A personal API token: shown once when created, stored only as a SHA-256 hash."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100, help_text="what the owner uses it for")
    prefix = models.CharField(max_length=12, help_text="the token's first characters, to tell tokens apart")
    token_hash = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(default=timezone.now)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.user}: {self.name} ({self.prefix}…)"


class WebhookSecret(models.Model):
    """The key a user's webhook events are signed with (HMAC-SHA256); one per user."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="webhook_secret"
    )
    secret = models.CharField(max_length=64)
    created_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"webhook secret of {self.user}"


class WebhookDelivery(models.Model):
    """One attempt to deliver a job's event to its callback URL, kept for staff to inspect."""

    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="webhook_deliveries")
    event = models.CharField(max_length=32)
    url = models.URLField(max_length=500)
    attempt = models.PositiveSmallIntegerField(default=1)
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    error = models.TextField(blank=True)
    succeeded = models.BooleanField(default=False)
    duration_ms = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.event} to {self.url} (attempt {self.attempt})"


class ShareLinkQuerySet(models.QuerySet):
    def active(self) -> "ShareLinkQuerySet":
        """Links that open: not revoked and not expired."""
        now = timezone.now()
        return self.filter(revoked_at__isnull=True).filter(Q(expires_at__isnull=True) | Q(expires_at__gt=now))


class ShareLink(models.Model):
    """A link that opens one finished job's player for anyone who has it (jobs/sharing/).

    Only the SHA-256 of its token is stored: the link is shown once, when it is made.
    """

    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="share_links")
    token_hash = models.CharField(max_length=64, unique=True)
    allow_downloads = models.BooleanField(
        default=False, help_text="the stems can be downloaded, not only played"
    )
    show_owner = models.BooleanField(default=False, help_text="the page names the owner")
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField(null=True, blank=True, help_text="empty: never")
    revoked_at = models.DateTimeField(null=True, blank=True)
    open_count = models.PositiveIntegerField(default=0, help_text="times its page was opened")
    last_opened_at = models.DateTimeField(null=True, blank=True)

    objects = ShareLinkQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"share link {self.pk} of {self.job.original_name}"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > timezone.now())

    def revoke(self) -> bool:
        """Stop the link from opening; False if it was already revoked."""
        now = timezone.now()
        updated = ShareLink.objects.filter(pk=self.pk, revoked_at__isnull=True).update(revoked_at=now)
        if updated:
            self.revoked_at = now
        return bool(updated)

    def record_open(self) -> None:
        """Count one opening of the page (one update, however many people open it at once)."""
        now = timezone.now()
        ShareLink.objects.filter(pk=self.pk).update(open_count=models.F("open_count") + 1, last_opened_at=now)
