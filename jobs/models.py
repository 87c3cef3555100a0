"""A Job is one uploaded track and its separation; a Stem is one separated output file."""

import uuid
from pathlib import PurePosixPath

from django.conf import settings
from django.db import models
from django.urls import reverse
from django.utils import timezone
from django.utils.text import slugify


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


class JobQuerySet(models.QuerySet):
    def for_user(self, user) -> "JobQuerySet":
        """What a user may see: their own jobs, or every job for staff."""
        if not user.is_authenticated:
            return self.none()
        if user.is_staff:
            return self
        return self.filter(owner=user)


class Job(models.Model):
    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"
        CANCELED = "canceled", "Canceled"

    FINISHED = (Status.SUCCEEDED, Status.FAILED, Status.CANCELED)

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="jobs")
    original_name = models.CharField(max_length=255)
    input_file = models.FileField(upload_to=input_upload_to, max_length=255)
    model_name = models.CharField(max_length=64)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED, db_index=True)
    progress = models.PositiveSmallIntegerField(default=0)
    error_message = models.TextField(blank=True)
    duration_seconds = models.FloatField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    objects = JobQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.original_name} ({self.get_status_display()})"

    def get_absolute_url(self) -> str:
        return reverse("job_detail", args=[self.pk])

    @property
    def is_finished(self) -> bool:
        return self.status in self.FINISHED

    @property
    def display_name(self) -> str:
        """The user's file name without its extension, for labels and download names."""
        stem, dot, _ = self.original_name.rpartition(".")
        return stem if dot and stem else self.original_name

    def mark_running(self) -> None:
        self.status = self.Status.RUNNING
        self.progress = 0
        self.error_message = ""
        self.started_at = timezone.now()
        self.finished_at = None
        self.save(update_fields=["status", "progress", "error_message", "started_at", "finished_at"])

    def set_progress(self, percent: int) -> None:
        self.progress = max(0, min(100, int(percent)))
        self.save(update_fields=["progress"])

    def mark_succeeded(self) -> None:
        self.status = self.Status.SUCCEEDED
        self.progress = 100
        self.finished_at = timezone.now()
        self.save(update_fields=["status", "progress", "finished_at"])

    def mark_failed(self, message: str) -> None:
        self.status = self.Status.FAILED
        self.error_message = message
        self.finished_at = timezone.now()
        self.save(update_fields=["status", "error_message", "finished_at"])

    def delete_with_files(self) -> None:
        """Remove the job, its stems and every stored file: nothing of the upload stays behind."""
        self.delete_stems()
        self.input_file.delete(save=False)
        self.delete()

    def delete_stems(self) -> None:
        """Remove every stem row and its file: used when a run fails half-way."""
        for stem in self.stems.all():
            stem.file.delete(save=False)
            stem.delete()


class Stem(models.Model):
    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="stems")
    name = models.CharField(max_length=32)
    file = models.FileField(upload_to=stem_upload_to, max_length=255)
    size = models.PositiveBigIntegerField(default=0)

    class Meta:
        ordering = ["job", "name"]
        constraints = [models.UniqueConstraint(fields=["job", "name"], name="unique_stem_per_job")]

    def __str__(self) -> str:
        return f"{self.job.original_name}: {self.name}"

    def get_absolute_url(self) -> str:
        return reverse("stem_file", args=[self.job_id, self.name])

    @property
    def extension(self) -> str:
        return PurePosixPath(self.file.name).suffix.lstrip(".")

    @property
    def download_name(self) -> str:
        return f"{self.job.display_name} - {self.name}.{self.extension}"
