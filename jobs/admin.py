from django.contrib import admin

from jobs.models import Job, Stem


class StemInline(admin.TabularInline):
    model = Stem
    extra = 0
    fields = ("name", "file", "size")
    readonly_fields = ("name", "file", "size")
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Job)
class JobAdmin(admin.ModelAdmin):
    list_display = (
        "original_name",
        "owner",
        "model_name",
        "status",
        "progress",
        "duration_seconds",
        "created_at",
    )
    list_filter = ("status", "model_name", "owner")
    search_fields = ("original_name", "owner__username", "owner__email", "id")
    date_hierarchy = "created_at"
    readonly_fields = ("id", "created_at", "started_at", "finished_at", "progress", "duration_seconds")
    list_select_related = ("owner",)
    inlines = [StemInline]


@admin.register(Stem)
class StemAdmin(admin.ModelAdmin):
    list_display = ("job", "name", "size")
    list_filter = ("name", "job__model_name", "job__owner")
    search_fields = ("job__original_name", "job__owner__username", "name")
    readonly_fields = ("size",)
    list_select_related = ("job", "job__owner")
