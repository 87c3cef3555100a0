"""What the API sends and takes; each job's status is also given as the original backend's `state`."""

from datetime import datetime
from typing import Literal
from uuid import UUID

from django.http import HttpRequest
from django.urls import reverse
from ninja import Schema
from pydantic import Field

from jobs.capabilities import Capabilities
from jobs.models import Job, MixExport, ShareLink
from jobs.options import MODELS, PRECISIONS

# Our statuses in the lifecycle the original backend exposed (pending, processing, completed, failed).
STATES = {
    Job.Status.DOWNLOADING: "pending",
    Job.Status.QUEUED: "pending",
    Job.Status.RUNNING: "processing",
    Job.Status.SUCCEEDED: "completed",
    Job.Status.FAILED: "failed",
    Job.Status.CANCELED: "canceled",
}


class ErrorBody(Schema):
    code: str = Field(description="stable, machine-readable: invalid, unauthorized, not_found, conflict, ...")
    message: str = Field(description="a sentence for a person")
    details: object | None = None


class ErrorOut(Schema):
    error: ErrorBody


class JobOut(Schema):
    id: UUID
    status: Literal["downloading", "queued", "running", "succeeded", "failed", "canceled"] = Field(
        description="downloading: an import fetching its link (progress is the download's percent)"
    )
    state: Literal["pending", "processing", "completed", "failed", "canceled"]
    progress: int
    original_name: str
    source_url: str = Field(description="the link the track was imported from; empty for an upload")
    model: str
    options: dict
    precision: Literal["full", "half"] = Field(description="the precision asked for")
    engine: str = Field(description="what ran the model: openvino or pytorch; empty until it starts")
    arithmetic: str = Field(description="what it computed in: fp32, bf16 or fp16; empty until it starts")
    error_message: str
    attempt: int
    callback_url: str
    duration_seconds: float | None
    tempo_bpm: float | None = Field(
        description="measured tempo in beats per minute; null when the track has no steady tempo or is "
        "not analysed yet (see analysed)"
    )
    beats: list[float] = Field(description="beat times in seconds, from the drums stem")
    key: str = Field(description='e.g. "A minor"; empty when unknown')
    analysed: bool = Field(description="whether tempo, beats and key have been measured")
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    url: str = Field(description="the job's page in the browser")
    stems_url: str


class ModelOut(Schema):
    name: str
    label: str
    stems: list[str]
    description: str


class PrecisionOut(Schema):
    name: Literal["full", "half"]
    label: str
    description: str


class ModelsOut(Schema):
    models: list[ModelOut]
    default_model: str
    precisions: list[PrecisionOut]
    default_precision: Literal["full", "half"]
    half_arithmetic: str = Field(description="e.g. bf16 when half precision is offered, else empty")
    unavailable: str | None = Field(description="why no upload can be separated now, or null")


class JobPage(Schema):
    items: list[JobOut]
    count: int
    page: int
    pages: int
    page_size: int


class StemOut(Schema):
    name: str
    label: str
    size: int
    url: str = Field(description="absolute download URL; send the same Authorization header")


class LoopIn(Schema):
    start: float = Field(description="seconds into the track")
    end: float = Field(description="seconds into the track, after start")


class ExportIn(Schema):
    format: Literal["mp3", "wav", "flac"] = "mp3"
    gains: dict[str, float] = Field(
        default_factory=dict, description="stem name -> level 0..2 (1 if left out)"
    )
    mute: list[str] = Field(default_factory=list)
    solo: list[str] = Field(default_factory=list)
    tempo: float = Field(100, description="percent of the original tempo, whole, 50 to 150; pitch is kept")
    semitones: float = Field(0, description="pitch shift in whole semitones, -12 to 12; tempo is kept")
    loop: LoopIn | None = Field(None, description="export only this span of the track")

    def practice_fields(self) -> dict[str, str]:
        """The practice settings as the export form's fields, so both are checked by one form."""
        fields = {"tempo": str(self.tempo), "semitones": str(self.semitones)}
        if self.loop is not None:
            fields.update(loop_start=str(self.loop.start), loop_end=str(self.loop.end))
        return fields


class ExportOut(Schema):
    id: UUID
    status: Literal["queued", "running", "succeeded", "failed"]
    progress: int
    format: str
    gains: dict[str, float] = Field(description="effective gain per stem, after mute and solo")
    tempo: int = Field(description="percent of the original tempo")
    semitones: int
    loop: list[float] | None = Field(description="[start, end] in seconds when only a span was exported")
    name: str = Field(description="the file name it downloads as")
    error_message: str
    size: int
    created_at: datetime
    finished_at: datetime | None
    url: str | None = Field(description="absolute download URL once the mix has succeeded")


def job_out(request: HttpRequest, job: Job) -> dict:
    return {
        "id": job.pk,
        "status": job.status,
        "state": STATES[job.status],
        "progress": job.progress,
        "original_name": job.original_name,
        "source_url": job.source_url,
        "model": job.model_name,
        "options": job.options,
        "precision": job.job_options.precision_choice.name,
        "engine": job.engine,
        "arithmetic": job.arithmetic,
        "error_message": job.error_message,
        "attempt": job.attempt,
        "callback_url": job.callback_url,
        "duration_seconds": job.duration_seconds,
        "tempo_bpm": job.tempo_bpm,
        "beats": job.beats,
        "key": job.key,
        "analysed": job.analysed_at is not None,
        "created_at": job.created_at,
        "started_at": job.started_at,
        "finished_at": job.finished_at,
        "url": request.build_absolute_uri(job.get_absolute_url()),
        "stems_url": request.build_absolute_uri(reverse("api:job_stems", args=[job.pk])),
    }


def export_out(request: HttpRequest, export: MixExport) -> dict:
    ready = export.status == MixExport.Status.SUCCEEDED
    return {
        "id": export.pk,
        "status": export.status,
        "progress": export.progress,
        "format": export.output_format,
        "gains": export.settings.get("gains", {}),
        "tempo": export.practice.tempo,
        "semitones": export.practice.semitones,
        "loop": list(export.practice.loop) if export.practice.loop else None,
        "name": export.download_name,
        "error_message": export.error_message,
        "size": export.size,
        "created_at": export.created_at,
        "finished_at": export.finished_at,
        "url": request.build_absolute_uri(reverse("api:export_download", args=[export.job_id, export.pk]))
        if ready
        else None,
    }


def models_out(capabilities: Capabilities) -> dict:
    return {
        "models": [
            {"name": name, "label": MODELS[name].label, "stems": list(MODELS[name].stems),
             "description": MODELS[name].description}
            for name in capabilities.models
        ],
        "default_model": capabilities.default_model(),
        "precisions": [
            {"name": name, "label": PRECISIONS[name].label, "description": PRECISIONS[name].description}
            for name in capabilities.precisions
        ],
        "default_precision": capabilities.default_precision(),
        "half_arithmetic": capabilities.half_arithmetic,
        "unavailable": capabilities.unavailable or None,
    }  # fmt: skip


class ShareIn(Schema):
    expires: Literal["day", "week", "never"] = Field("week", description="how long the link opens")
    allow_downloads: bool = Field(False, description="the stems can be downloaded, not only played")
    show_owner: bool = Field(False, description="the page shows your user name")


class ShareOut(Schema):
    id: int
    active: bool = Field(description="opens now: not revoked and not expired")
    expires_at: datetime | None
    revoked_at: datetime | None
    allow_downloads: bool
    show_owner: bool
    open_count: int = Field(description="times the shared page was opened")
    created_at: datetime
    url: str | None = Field(
        None, description="the link itself: only in the answer that made it (it is stored hashed)"
    )


def share_out(link: ShareLink, url: str | None = None) -> dict:
    return {
        "id": link.pk,
        "active": link.is_active,
        "expires_at": link.expires_at,
        "revoked_at": link.revoked_at,
        "allow_downloads": link.allow_downloads,
        "show_owner": link.show_owner,
        "open_count": link.open_count,
        "created_at": link.created_at,
        "url": url,
    }
