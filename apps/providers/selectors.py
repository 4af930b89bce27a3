"""Reads shared by the provider API, the pages and the serving path: the list filter,
this month's usage, the connector of a kind, and the provider row a prediction uses."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date
from decimal import Decimal
from typing import Any

import django_filters
from django import forms
from django.db.models import Sum
from django.db.models.signals import post_delete, post_save
from django.utils import timezone

from apps.core.db import current_schema
from apps.core.trust import TrustCache
from apps.providers.connectors import connector_class
from apps.providers.connectors.base import Connector
from apps.providers.models import ProviderConfig, ProviderUsage

# (schema, provider id) -> the row the serving path calls the provider with: its
# settings, decrypted key and breaker state, read at most every
# GROUP_ROUTE_TRUST_SECONDS per process (like the group's route). A change saved in
# this process, or a breaker this process trips or resets, is forgotten at once.
_serving: TrustCache[ProviderConfig] = TrustCache("GROUP_ROUTE_TRUST_SECONDS")


def provider_for_serving(provider_id: int) -> ProviderConfig:
    return _serving.get_or_read(
        (current_schema(), provider_id),
        lambda: ProviderConfig.objects.get(pk=provider_id),
    )


def forget_serving_provider(provider_id: int) -> None:
    schema = current_schema()
    _serving.forget(lambda key, _: key == (schema, provider_id))


def _forget_saved(instance: ProviderConfig, **_: Any) -> None:
    forget_serving_provider(instance.pk)


post_save.connect(_forget_saved, sender=ProviderConfig)
post_delete.connect(_forget_saved, sender=ProviderConfig)


def connector_or_none(kind: str | None) -> type[Connector] | None:
    """The connector class of a kind, or None for an unknown or unavailable kind."""
    if not kind:
        return None
    try:
        return connector_class(kind)
    except (KeyError, ImportError):
        return None


class ProviderFilter(django_filters.FilterSet):
    search = django_filters.CharFilter(
        field_name="name", lookup_expr="icontains", label="Name contains"
    )
    kind = django_filters.ChoiceFilter(
        choices=ProviderConfig.Kind.choices, empty_label="any"
    )
    health = django_filters.ChoiceFilter(
        field_name="last_health_status",
        choices=ProviderConfig.Health.choices,
        empty_label="any",
        label="Health",
    )
    enabled = django_filters.BooleanFilter(
        widget=forms.Select(choices=[("", "any"), ("true", "yes"), ("false", "no")])
    )

    class Meta:
        model = ProviderConfig
        fields = ["search", "kind", "health", "enabled"]


def month_start() -> date:
    return timezone.localdate().replace(day=1)


def empty_usage() -> dict[str, Any]:
    return {
        "requests": 0,
        "errors": 0,
        "avg_latency_ms": None,
        "tokens_in": 0,
        "tokens_out": 0,
        "cost": Decimal(0),
    }


def provider_usage_month(*, provider_ids: Iterable[int]) -> dict[int, dict[str, Any]]:
    """This month's usage per provider, for many providers in one aggregate query."""
    ids = list(provider_ids)
    usage: dict[int, dict[str, Any]] = {pk: empty_usage() for pk in ids}
    if not ids:
        return usage
    rows = (
        ProviderUsage.objects.filter(provider_id__in=ids, day__gte=month_start())
        .values("provider_id")
        .order_by("provider_id")
        .annotate(
            requests=Sum("requests"),
            errors=Sum("errors"),
            latency=Sum("latency_ms_total"),
            tokens_in=Sum("tokens_in"),
            tokens_out=Sum("tokens_out"),
            cost=Sum("cost"),
        )
    )
    for row in rows:
        requests = row["requests"] or 0
        usage[row["provider_id"]] = {
            "requests": requests,
            "errors": row["errors"] or 0,
            "avg_latency_ms": round(row["latency"] / requests, 1) if requests else None,
            "tokens_in": row["tokens_in"] or 0,
            "tokens_out": row["tokens_out"] or 0,
            "cost": row["cost"] or Decimal(0),
        }
    return usage
