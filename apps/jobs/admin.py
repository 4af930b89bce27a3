from django.contrib import admin

from apps.jobs.models import Dataset, Job, JobEvent


@admin.register(Dataset)
class DatasetAdmin(admin.ModelAdmin):
    list_display = ["id", "name", "row_count", "column_count", "created_at"]
    readonly_fields = [f.name for f in Dataset._meta.fields]


class JobEventInline(admin.TabularInline):
    model = JobEvent
    extra = 0
    readonly_fields = ["created_at", "level", "message", "metrics"]
    can_delete = False


@admin.register(Job)
class JobAdmin(admin.ModelAdmin):
    """Read-only: transitions go through the services (and the API/pages)."""

    list_display = ["id", "kind", "status", "progress", "attempts", "created_at"]
    list_filter = ["status", "kind"]
    readonly_fields = [f.name for f in Job._meta.fields]
    inlines = [JobEventInline]

    def has_add_permission(self, request, obj=None):  # type: ignore[no-untyped-def]
        return False
