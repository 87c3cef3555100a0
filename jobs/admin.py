"""Admin: jobs, stems and share links for staff, per-user usage, and the queue dashboard for
superusers only."""

from datetime import timedelta
from functools import wraps

from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin.actions import delete_selected
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin
from django.core.exceptions import PermissionDenied
from django.db.models import Count, IntegerField, OuterRef, Q, Subquery, Sum, URLField
from django.db.models.functions import Coalesce
from django.template.defaultfilters import filesizeformat
from django.utils import timezone
from django_rq.admin import QueueAdmin
from django_rq.models import Dashboard

from jobs.background.tasks import job_timeout
from jobs.control import cancel_job, retry_job
from jobs.models import IdenticalJobActive, Job, ShareLink, Stem, WebhookDelivery
from jobs.options import PRECISIONS
from jobs.webhooks import redeliver


class StemInline(admin.TabularInline):
    model = Stem
    extra = 0
    fields = ("name", "file", "size")
    readonly_fields = ("name", "file", "size")
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False


class StuckFilter(admin.SimpleListFilter):
    """Jobs that should have moved on: running past their time limit, or queued for too long."""

    title = "stuck"
    parameter_name = "stuck"

    def lookups(self, request, model_admin):
        return [
            ("running", "Running past its time limit"),
            ("queued", f"Queued over {settings.STEMSITE_STUCK_QUEUED_MINUTES} min"),
        ]

    def queryset(self, request, queryset):
        now = timezone.now()
        if self.value() == "running":
            running = Job.objects.filter(status=Job.Status.RUNNING, started_at__isnull=False)
            overdue = [
                job.pk
                for job in running
                if job.started_at + timedelta(seconds=job_timeout(job.duration_seconds, job.job_options))
                < now
            ]
            return queryset.filter(pk__in=overdue)
        if self.value() == "queued":
            since = now - timedelta(minutes=settings.STEMSITE_STUCK_QUEUED_MINUTES)
            return queryset.filter(status=Job.Status.QUEUED, queued_at__lt=since)
        return queryset


class OldFilter(admin.SimpleListFilter):
    """Finished jobs nobody has needed for a while: candidates for deletion with their files."""

    title = "finished"
    parameter_name = "finished_before"
    DAYS = (7, 30, 90, 365)

    def lookups(self, request, model_admin):
        return [(str(days), f"Over {days} days ago") for days in self.DAYS]

    def queryset(self, request, queryset):
        if self.value() in {str(days) for days in self.DAYS}:
            since = timezone.now() - timedelta(days=int(self.value()))
            return queryset.filter(status__in=Job.FINISHED, finished_at__lt=since)
        return queryset


class PrecisionFilter(admin.SimpleListFilter):
    """The precision asked for (what ran is the engine and arithmetic filters)."""

    title = "precision"
    parameter_name = "precision"

    def lookups(self, request, model_admin):
        return [(name, precision.label) for name, precision in PRECISIONS.items()]

    def queryset(self, request, queryset):
        if self.value() in PRECISIONS:
            return queryset.filter(options__precision=self.value())
        return queryset


class KeyFilter(admin.SimpleListFilter):
    """The measured key, as found on the site's jobs ("A minor"), or not known."""

    title = "key"
    parameter_name = "key"

    def lookups(self, request, model_admin):
        keys = Job.objects.exclude(key="").order_by("key").values_list("key", flat=True).distinct()
        return [(key, key) for key in keys] + [("-", "Unknown")]

    def queryset(self, request, queryset):
        if self.value() == "-":
            return queryset.filter(key="")
        if self.value():
            return queryset.filter(key=self.value())
        return queryset


class TempoFilter(admin.SimpleListFilter):
    """The measured tempo in ranges, or no steady tempo, or not measured."""

    title = "tempo"
    parameter_name = "tempo"
    RANGES = {"0-80": (0, 80), "80-100": (80, 100), "100-120": (100, 120), "120-140": (120, 140),
              "140-": (140, None)}  # fmt: skip

    def lookups(self, request, model_admin):
        ranges = [
            (
                name,
                f"{low} BPM and faster"
                if high is None
                else f"{low} to {high} BPM"
                if low
                else f"Under {high} BPM",
            )
            for name, (low, high) in self.RANGES.items()
        ]
        return [*ranges, ("none", "No steady tempo"), ("unanalysed", "Not analysed")]

    def queryset(self, request, queryset):
        if self.value() in self.RANGES:
            low, high = self.RANGES[self.value()]
            queryset = queryset.filter(tempo_bpm__gte=low)
            return queryset if high is None else queryset.filter(tempo_bpm__lt=high)
        if self.value() == "none":
            return queryset.filter(analysed_at__isnull=False, tempo_bpm__isnull=True)
        if self.value() == "unanalysed":
            return queryset.filter(analysed_at__isnull=True)
        return queryset


@admin.register(Job)
class JobAdmin(admin.ModelAdmin):
    # Callback URLs typed without a scheme are https, as Django 6 will assume.
    formfield_overrides = {URLField: {"assume_scheme": "https"}}
    list_display = (
        "original_name",
        "owner",
        "model_name",
        "precision",
        "engine",
        "status",
        "progress",
        "duration_seconds",
        "tempo_and_key",
        "created_at",
    )
    list_filter = (
        "status", StuckFilter, OldFilter, "model_name", PrecisionFilter, "engine", "arithmetic",
        KeyFilter, TempoFilter, "owner",
    )  # fmt: skip
    search_fields = ("original_name", "owner__username", "owner__email", "id", "source_url")
    date_hierarchy = "created_at"
    readonly_fields = (
        "id", "created_at", "started_at", "finished_at", "progress", "duration_seconds",
        "engine", "arithmetic", "tempo_bpm", "key", "beats", "analysed_at", "source_url", "duplicate_of",
    )  # fmt: skip
    exclude = ("source_key",)
    list_select_related = ("owner",)
    inlines = [StemInline]
    actions = ["retry_jobs", "cancel_jobs", "delete_with_files"]

    @admin.display(description="tempo and key")
    def tempo_and_key(self, job: Job) -> str:
        return job.tempo_and_key

    @admin.display(description="precision")
    def precision(self, job: Job) -> str:
        return job.job_options.precision_choice.label

    @admin.action(description="Retry selected failed or canceled jobs")
    def retry_jobs(self, request, queryset):
        retried = sum(_retry_unless_identical_active(job) for job in queryset)
        self._report(
            request, retried, len(queryset), "queued again",
            "not failed or canceled, or the same upload is already queued or running",
        )  # fmt: skip

    @admin.action(description="Cancel selected queued or running jobs")
    def cancel_jobs(self, request, queryset):
        canceled = sum(cancel_job(job) for job in queryset)
        self._report(request, canceled, len(queryset), "canceled", "already finished")

    def _report(self, request, done: int, selected: int, verb: str, reason: str) -> None:
        if done:
            self.message_user(request, f"{done} job{'s' if done != 1 else ''} {verb}.", messages.SUCCESS)
        if selected - done:
            self.message_user(request, f"{selected - done} skipped: {reason}.", messages.WARNING)

    @admin.action(description="Delete selected finished jobs and their files", permissions=["delete"])
    def delete_with_files(self, request, queryset):
        """Django's delete confirmation, for finished jobs only; queued or running ones are left out."""
        active = queryset.filter(status__in=Job.ACTIVE).count()
        if active and "post" not in request.POST:
            self.message_user(
                request,
                f"{active} queued or running job{'s are' if active != 1 else ' is'} left out: cancel first.",
                messages.WARNING,
            )
        finished = queryset.filter(status__in=Job.FINISHED)
        if not finished.exists():
            return None
        return delete_selected(self, request, finished)

    def get_actions(self, request):
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)  # it would leave every file behind
        return actions

    def has_delete_permission(self, request, obj=None):
        """A job still queued or running is canceled first, so no worker writes files after it is gone."""
        if obj is not None and not obj.is_finished:
            return False
        return super().has_delete_permission(request, obj)

    def delete_model(self, request, obj):
        obj.delete_with_files()

    def delete_queryset(self, request, queryset):
        for job in queryset:
            job.delete_with_files()


@admin.register(Stem)
class StemAdmin(admin.ModelAdmin):
    list_display = ("job", "name", "size")
    list_filter = ("name", "job__model_name", "job__owner")
    search_fields = ("job__original_name", "job__owner__username", "name")
    readonly_fields = ("size",)
    list_select_related = ("job", "job__owner")


def _sum_for_owner(queryset, owner_path: str, field: str) -> Subquery:
    totals = (
        queryset.filter(**{owner_path: OuterRef("pk")})
        .order_by()
        .values(owner_path)
        .annotate(total=Sum(field))
        .values("total")
    )
    return Coalesce(Subquery(totals, output_field=IntegerField()), 0)


User = get_user_model()
admin.site.unregister(User)


@admin.register(User)
class UserUsageAdmin(UserAdmin):
    """Django's user admin, plus each user's jobs and the storage their files take."""

    list_display = (*UserAdmin.list_display, "job_count", "active_jobs", "storage")

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .annotate(
                job_total=Count("jobs", distinct=True),
                active_total=Count("jobs", filter=Q(jobs__status__in=Job.ACTIVE), distinct=True),
                input_bytes=_sum_for_owner(Job.objects.all(), "owner", "input_size"),
                stem_bytes=_sum_for_owner(Stem.objects.all(), "job__owner", "size"),
            )
        )

    @admin.display(description="jobs", ordering="job_total")
    def job_count(self, user) -> int:
        return user.job_total

    @admin.display(description="queued or running", ordering="active_total")
    def active_jobs(self, user) -> int:
        return user.active_total

    @admin.display(description="storage")
    def storage(self, user) -> str:
        return filesizeformat(user.input_bytes + user.stem_bytes)


def _superuser_only(view):
    """django-rq's views admit any staff user, and they can empty queues and stop jobs.

    Staff who are not superusers get 403; everyone else goes on to django-rq's own gate (the
    admin login, or its API token for the stats).
    """

    @wraps(view)
    def guarded(request, *args, **kwargs):
        user = request.user
        if user.is_authenticated and user.is_staff and not user.is_superuser:
            raise PermissionDenied
        return view(request, *args, **kwargs)

    return guarded


admin.site.unregister(Dashboard)


@admin.register(Dashboard)
class QueueDashboardAdmin(QueueAdmin):
    """The queue dashboard at /admin/django_rq/dashboard/, for superusers; 403 for other staff."""

    def has_module_permission(self, request):
        return request.user.is_active and request.user.is_superuser

    def has_view_permission(self, request, obj=None):
        return self.has_module_permission(request)

    def has_change_permission(self, request, obj=None):
        return self.has_module_permission(request)

    def get_urls(self):
        urls = super().get_urls()
        for pattern in urls:
            pattern.callback = _superuser_only(pattern.callback)
        return urls


def _retry_unless_identical_active(job: Job) -> bool:
    """Retry one job for a bulk action; one with an identical active twin is skipped, not an error."""
    try:
        return retry_job(job)
    except IdenticalJobActive:
        return False


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(admin.ModelAdmin):
    """Every webhook attempt, read-only: what was sent where, and what the receiver answered."""

    list_display = ("created_at", "event", "job", "url", "attempt", "status_code", "succeeded", "duration_ms")
    list_filter = ("event", "succeeded")
    search_fields = ("url", "job__id", "job__original_name")
    list_select_related = ("job",)
    readonly_fields = [field.name for field in WebhookDelivery._meta.fields]
    actions = ["redeliver_events"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    @admin.action(description="Send these events again", permissions=["view"])
    def redeliver_events(self, request, queryset):
        sent = sum(redeliver(delivery) for delivery in queryset.select_related("job"))
        self.message_user(request, f"{sent} event(s) queued for delivery again.", messages.SUCCESS)


@admin.register(ShareLink)
class ShareLinkAdmin(admin.ModelAdmin):
    """Every share link: whose job, what it allows, how often it was opened; staff can revoke.
    Links are only made by their job's owner; the token itself is never stored, only its hash."""

    list_display = (
        "job", "owner", "created_at", "expires_at", "revoked_at", "active", "allow_downloads", "show_owner",
        "open_count",
    )  # fmt: skip
    list_filter = ("allow_downloads", "show_owner", ("revoked_at", admin.EmptyFieldListFilter))
    search_fields = ("job__original_name", "job__owner__username", "job__id")
    list_select_related = ("job", "job__owner")
    readonly_fields = [field.name for field in ShareLink._meta.fields if field.name != "token_hash"]
    exclude = ("token_hash",)
    actions = ["revoke_links"]

    @admin.display(description="owner", ordering="job__owner__username")
    def owner(self, link: ShareLink) -> str:
        return link.job.owner.get_username()

    @admin.display(description="opens now", boolean=True)
    def active(self, link: ShareLink) -> bool:
        return link.is_active

    def has_add_permission(self, request):
        return False

    @admin.action(description="Revoke selected share links", permissions=["change"])
    def revoke_links(self, request, queryset):
        revoked = sum(link.revoke() for link in queryset)
        self.message_user(request, f"{revoked} share link(s) revoked.", messages.SUCCESS)
