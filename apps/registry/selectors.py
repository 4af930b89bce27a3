"""Registry reads shared by the API and the pages: the model and version filters,
the model list with its version count and latest version in a constant number of
queries, and which catalogue entries are already imported."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import django_filters
from django.core.validators import RegexValidator
from django.db.models import Count, Exists, OuterRef, Prefetch, Q, QuerySet

from apps.providers.models import ProviderConfig
from apps.registry.models import ModelVersion, RegisteredModel

# A provider filter value: a provider's id or a provider kind.
_PROVIDER_VALUE = RegexValidator(
    rf"^(\d{{1,18}}|{'|'.join(ProviderConfig.Kind.values)})$",
    message=(
        f"A provider id or one of the kinds: {', '.join(ProviderConfig.Kind.values)}."
    ),
)


def provider_q(value: str, prefix: str = "") -> Q:
    """Versions of a provider given by id ("12") or by kind ("openai")."""
    if value.isdigit():
        return Q(**{f"{prefix}provider_id": int(value)})
    return Q(**{f"{prefix}provider__kind": value})


def _has_version(*conditions: Q, **lookups: Any) -> Exists:
    # Exists, not a join: a join would multiply the rows the version count sees.
    return Exists(
        ModelVersion.objects.filter(*conditions, model=OuterRef("pk"), **lookups)
    )


class ModelFilter(django_filters.FilterSet):
    search = django_filters.CharFilter(
        method="filter_search", label="Name or description contains"
    )
    provider = django_filters.CharFilter(
        method="filter_provider",
        label="Provider (id or kind)",
        validators=[_PROVIDER_VALUE],
        help_text="Models with a version from this provider: its id or a kind.",
    )
    task_type = django_filters.ChoiceFilter(
        choices=RegisteredModel.Task.choices, empty_label="any", label="Task"
    )
    status = django_filters.ChoiceFilter(
        method="filter_status",
        choices=ModelVersion.Status.choices,
        empty_label="any",
        label="Has a version that is",
    )
    tag = django_filters.CharFilter(
        method="filter_tag", max_length=50, label="Tag", help_text="Exact tag."
    )

    class Meta:
        model = RegisteredModel
        fields = ["search", "provider", "task_type", "status", "tag"]

    def filter_search(
        self, queryset: QuerySet[RegisteredModel], name: str, value: str
    ) -> QuerySet[RegisteredModel]:
        return queryset.filter(
            Q(name__icontains=value) | Q(description__icontains=value)
        )

    def filter_provider(
        self, queryset: QuerySet[RegisteredModel], name: str, value: str
    ) -> QuerySet[RegisteredModel]:
        return queryset.filter(_has_version(provider_q(value)))

    def filter_status(
        self, queryset: QuerySet[RegisteredModel], name: str, value: str
    ) -> QuerySet[RegisteredModel]:
        return queryset.filter(_has_version(status=value))

    def filter_tag(
        self, queryset: QuerySet[RegisteredModel], name: str, value: str
    ) -> QuerySet[RegisteredModel]:
        return queryset.filter(tags__contains=[value])


class VersionFilter(django_filters.FilterSet):
    model = django_filters.CharFilter(
        field_name="model__slug", max_length=200, label="Model slug"
    )
    provider = django_filters.CharFilter(
        method="filter_provider",
        label="Provider (id or kind)",
        validators=[_PROVIDER_VALUE],
    )
    status = django_filters.ChoiceFilter(choices=ModelVersion.Status.choices)
    source = django_filters.ChoiceFilter(choices=ModelVersion.Source.choices)
    external_id = django_filters.CharFilter(max_length=300)

    class Meta:
        model = ModelVersion
        fields = ["model", "provider", "status", "source", "external_id"]

    def filter_provider(
        self, queryset: QuerySet[ModelVersion], name: str, value: str
    ) -> QuerySet[ModelVersion]:
        return queryset.filter(provider_q(value))


def model_list() -> QuerySet[RegisteredModel]:
    """Models with `version_count` and `latest` (a one-item list: the highest
    number, provider joined), in two queries whatever the page size."""
    latest = ModelVersion.objects.select_related("provider").order_by(
        "model_id", "-number"
    )
    return (
        RegisteredModel.objects.select_related("owner")
        .annotate(version_count=Count("versions"))
        .prefetch_related(Prefetch("versions", queryset=latest[:1], to_attr="latest"))
        .order_by("name")
    )


def model_versions(*, model: RegisteredModel) -> QuerySet[ModelVersion]:
    return model.versions.select_related("model", "provider", "parent").order_by(
        "-number"
    )


def version_list() -> QuerySet[ModelVersion]:
    return ModelVersion.objects.select_related("model", "provider", "parent").order_by(
        "-created_at", "-id"
    )


def imported_versions(
    *, provider: ProviderConfig, external_ids: Iterable[str]
) -> dict[str, dict[str, Any]]:
    """external id -> {version_id, number, status, model, model_slug} of what is
    already imported from this provider, in one query."""
    rows = ModelVersion.objects.filter(
        provider=provider, external_id__in=list(external_ids)
    ).values("external_id", "pk", "number", "status", "model__name", "model__slug")
    return {
        row["external_id"]: {
            "version_id": row["pk"],
            "number": row["number"],
            "status": row["status"],
            "model": row["model__name"],
            "model_slug": row["model__slug"],
        }
        for row in rows
    }


def import_preview(
    *,
    provider: ProviderConfig,
    external_id: str,
    metadata: dict[str, Any],
    model_name: str = "",
) -> dict[str, Any]:
    """What importing (provider, external id) with this clean metadata would do now:
    create, update or leave unchanged, and in which model."""
    existing = (
        ModelVersion.objects.select_related("model")
        .filter(provider=provider, external_id=external_id)
        .first()
    )
    warnings: list[str] = []
    if existing is not None:
        action = "unchanged" if existing.metadata == metadata else "update"
        warnings.append(
            f"Already imported as {existing.model.name} v{existing.number}: "
            "importing again updates that version, never duplicates it."
        )
        return {
            "action": action,
            "version_id": existing.pk,
            "model": existing.model.name,
            "warnings": warnings,
        }
    name = (model_name or f"{provider.name}/{external_id}")[:200]
    model = RegisteredModel.objects.filter(name=name).first()
    if model is not None:
        warnings.append(f"The model '{name}' exists: the import adds a version to it.")
    return {"action": "create", "version_id": None, "model": name, "warnings": warnings}


def model_slugs_of_versions(*, version_ids: Iterable[int]) -> dict[int, str]:
    """version id -> its model's slug, in one query (links in import reports)."""
    ids = [pk for pk in version_ids if pk]
    if not ids:
        return {}
    return dict(
        ModelVersion.objects.filter(pk__in=ids).values_list("pk", "model__slug")
    )


def provider_choices() -> list[tuple[str, str]]:
    """The provider filter's options on the pages: each kind in use, then each
    provider by id."""
    providers = list(
        ProviderConfig.objects.order_by("name").values_list("pk", "name", "kind")
    )
    kinds = sorted({kind for _, _, kind in providers})
    return [
        *[(kind, f"every {kind} provider") for kind in kinds],
        *[(str(pk), name) for pk, name, _ in providers],
    ]
