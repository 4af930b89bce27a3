"""Tenant admin for groups. Saves go through the services (audit, routing version);
members, weights and status are read-only here because their invariants (weights
sum to 100, one champion, the inference table on activation) live in the services
and the group's page is where they are changed."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.http import HttpRequest
from django.urls import NoReverseMatch, reverse
from django.utils.html import format_html

from apps.groups import services
from apps.groups.api.serializers import TrafficConfigSerializer
from apps.groups.models import Membership, ModelGroup

EDITABLE = (
    "name",
    "slug",
    "description",
    "strategy",
    "traffic_config",
    "promotion_rules",
    "hypothesis",
    "primary_metric",
    "test_end",
    "retention_days",
)
RECORD = (
    "status",
    "routing_version",
    "test_start",
    "created_by",
    "created_at",
    "updated_at",
)


def page_link(group: ModelGroup | None, text: str = "Open the group's page") -> str:
    if group is None or not group.pk:
        return "—"
    try:
        url = reverse("groups:group-detail", args=[group.slug])
    except NoReverseMatch:
        return "—"
    return format_html('<a href="{}">{}</a>', url, text)


class ModelGroupAdminForm(forms.ModelForm):
    class Meta:
        model = ModelGroup
        fields = EDITABLE

    def clean_slug(self) -> str:
        slug = self.cleaned_data["slug"]
        if slug in services.RESERVED_SLUGS:
            raise forms.ValidationError(f"'{slug}' is a word of the pages' URLs.")
        return str(slug)

    def clean_traffic_config(self) -> dict[str, Any]:
        value = self.cleaned_data.get("traffic_config") or {}
        if not isinstance(value, dict):
            raise forms.ValidationError("Expected a JSON object.")
        check = TrafficConfigSerializer(data=value)
        if not check.is_valid():
            raise forms.ValidationError(f"Not a traffic config: {check.errors}")
        return value


class MembershipInline(admin.TabularInline):
    model = Membership
    fields = ("version", "role", "weight", "active", "assigned_at")
    readonly_fields = fields
    extra = 0

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(ModelGroup)
class ModelGroupAdmin(admin.ModelAdmin):
    form = ModelGroupAdminForm
    list_display = ("name", "slug", "strategy", "status", "routing_version", "page")
    list_filter = ("status", "strategy")
    search_fields = ("name", "slug", "description")
    inlines = [MembershipInline]

    def get_fields(self, request: HttpRequest, obj: Any = None) -> tuple[str, ...]:
        return (*EDITABLE, *(RECORD if obj else ()), "page")

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        # The slug is how clients call the group: fixed once it exists.
        return [*RECORD, "page", *(("slug",) if obj else ())]

    @admin.display(description="Members, weights and status")
    def page(self, obj: ModelGroup | None) -> str:
        return page_link(obj, "Change them on the group's page")

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # archive instead: the log and the audit trail stay whole

    def save_model(
        self, request: HttpRequest, obj: ModelGroup, form: Any, change: bool
    ) -> None:
        """Through group_create / group_update (audited, routing version bumped)."""
        if change:
            fields = {
                f: form.cleaned_data[f]
                for f in EDITABLE
                if f in form.changed_data and f != "slug"
            }
            saved = (
                services.group_update(group=obj, actor=request.user, **fields)
                if fields
                else obj
            )
        else:
            fields = {
                f: form.cleaned_data[f] for f in EDITABLE if f in form.cleaned_data
            }
            saved = services.group_create(actor=request.user, **fields)
        obj.pk = saved.pk
        for name in ("slug", "routing_version", "created_by", "created_at"):
            setattr(obj, name, getattr(saved, name))
        obj.updated_at = saved.updated_at


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    """Read-only: members change as one list, on the group's page or the API."""

    list_display = ("group", "version", "role", "weight", "active", "assigned_at")
    list_filter = ("role", "active", "group")
    readonly_fields = ("group_page",)

    @admin.display(description="Change on")
    def group_page(self, obj: Membership) -> str:
        return page_link(obj.group)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
