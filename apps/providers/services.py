"""Provider configuration: every write, the connection test and discovery."""

from __future__ import annotations

import time
from typing import Any

from django.db import models, transaction
from django.utils import timezone

from apps.audit.services import audit_record
from apps.core.db import assert_tenant_schema
from apps.core.errors import ConflictError
from apps.core.ssrf import UnsafeURLError, check_url
from apps.providers.connectors import connector_class
from apps.providers.connectors.base import DiscoveredModel, ValidationReport
from apps.providers.errors import ProviderError
from apps.providers.models import ProviderConfig, ProviderRateWindow, ProviderUsage
from apps.providers.resilience import call_provider

# What a provider is configured with: everything a client may write but the key, and
# so also what an audit event may show.
CONFIG_FIELDS = [
    "name",
    "kind",
    "base_url",
    "organization",
    "project",
    "default_model",
    "settings",
    "timeout_seconds",
    "max_retries",
    "rate_limit_per_minute",
    "enabled",
    "price_per_1k_input",
    "price_per_1k_output",
    "monthly_token_budget",
    "monthly_cost_budget",
]
# Rows that belong to the provider itself; anything else pointing at it is a dependent.
_OWN_ROWS = {ProviderUsage, ProviderRateWindow}


def _snapshot(provider: ProviderConfig) -> dict[str, Any]:
    data = {f: getattr(provider, f) for f in CONFIG_FIELDS}
    for key in ("price_per_1k_input", "price_per_1k_output", "monthly_cost_budget"):
        data[key] = None if data[key] is None else str(data[key])
    data["api_key"] = provider.api_key_masked
    return data


def default_base_url(kind: str) -> str:
    return connector_class(kind).default_base_url


def provider_validate(
    *, data: dict[str, Any], resolve: bool = True
) -> ValidationReport:
    """Kind-specific checks, SSRF included, without saving anything."""
    kind = data.get("kind", "")
    report = connector_class(kind).validate_config(data)
    base_url = data.get("base_url") or default_base_url(kind)
    try:
        check_url(base_url, resolve=resolve)
    except UnsafeURLError as exc:
        report.error("base_url", exc.message)
    return report


@transaction.atomic
def provider_create(*, actor: Any, api_key: str = "", **fields: Any) -> ProviderConfig:
    assert_tenant_schema()
    if not fields.get("base_url"):
        fields["base_url"] = default_base_url(fields["kind"])
    check_url(fields["base_url"])
    if ProviderConfig.objects.filter(name=fields["name"]).exists():
        raise ConflictError(
            f"A provider named '{fields['name']}' exists.", fields={"name": ["taken"]}
        )
    provider = ProviderConfig(**fields, created_by=str(actor or "")[:254])
    _set_key(provider, api_key)
    provider.save()
    audit_record(
        actor=actor, action="provider.create", obj=provider, after=_snapshot(provider)
    )
    return provider


def _set_key(provider: ProviderConfig, api_key: str) -> None:
    provider.api_key = api_key
    provider.api_key_last4 = api_key[-4:] if len(api_key) > 8 else ""


@transaction.atomic
def provider_update(
    *, provider: ProviderConfig, actor: Any, api_key: str | None = None, **fields: Any
) -> ProviderConfig:
    """Change fields; the key changes only when `api_key` is given ("" clears it)."""
    assert_tenant_schema()
    provider = ProviderConfig.objects.select_for_update().get(pk=provider.pk)
    before = _snapshot(provider)
    if (
        "name" in fields
        and fields["name"] != provider.name
        and (
            ProviderConfig.objects.filter(name=fields["name"])
            .exclude(pk=provider.pk)
            .exists()
        )
    ):
        raise ConflictError(
            f"A provider named '{fields['name']}' exists.", fields={"name": ["taken"]}
        )
    for name, value in fields.items():
        setattr(provider, name, value)
    if "base_url" in fields or "kind" in fields:
        check_url(provider.base_url)
    key_changed = api_key is not None and api_key != provider.api_key
    if api_key is not None:
        _set_key(provider, api_key)
    provider.save()
    after = _snapshot(provider)
    changed = {k for k in after if before[k] != after[k]}
    if changed - {"api_key"}:
        audit_record(
            actor=actor,
            action="provider.update",
            obj=provider,
            before={k: before[k] for k in changed},
            after={k: after[k] for k in changed},
        )
    if key_changed:
        audit_record(
            actor=actor,
            action="provider.key_change",
            obj=provider,
            before={"api_key": before["api_key"]},
            after={"api_key": after["api_key"]},
        )
    return provider


def provider_dependents(*, provider: ProviderConfig) -> list[str]:
    """What points at this provider (model versions...), as readable labels."""
    found: list[str] = []
    for relation in provider._meta.related_objects:
        # Only rows that keep the provider from going (PROTECT) depend on it; rows that
        # merely remember it (SET_NULL, such as transformations) do not.
        if (
            relation.related_model in _OWN_ROWS
            or not relation.one_to_many
            or relation.on_delete is not models.PROTECT
        ):
            continue
        for obj in relation.related_model._default_manager.filter(
            **{relation.field.name: provider}
        )[:20]:
            found.append(f"{relation.related_model._meta.verbose_name} {obj}")
    return found


@transaction.atomic
def provider_delete(*, provider: ProviderConfig, actor: Any) -> None:
    assert_tenant_schema()
    dependents = provider_dependents(provider=provider)
    if dependents:
        raise ConflictError(
            f"Provider '{provider.name}' is in use by: {', '.join(dependents)}.",
            code="in_use",
            fields={"dependents": dependents},
        )
    snapshot = _snapshot(provider)
    pk = provider.pk
    provider.delete()
    audit_record(
        actor=actor,
        action="provider.delete",
        object_type="providers.providerconfig",
        object_id=str(pk),
        before=snapshot,
    )


def provider_test(*, provider: ProviderConfig, actor: Any = None) -> ProviderConfig:
    """Health check now (one attempt, no retries); the result is stored and returned."""
    started = time.perf_counter()
    try:
        call_provider(provider, lambda c: c.health_check(), attempts=1)
    except ProviderError as exc:
        status, code, error = ProviderConfig.Health.ERROR, exc.code, exc.message
    else:
        status, code, error = ProviderConfig.Health.OK, "", ""
    latency = round((time.perf_counter() - started) * 1000, 1)
    ProviderConfig.objects.filter(pk=provider.pk).update(
        last_health_status=status,
        last_health_latency_ms=latency,
        last_health_error=error[:500],
        last_health_error_code=code,
        last_health_at=timezone.now(),
    )
    provider.refresh_from_db()
    return provider


def provider_models(*, provider: ProviderConfig) -> list[DiscoveredModel]:
    """The provider's catalogue, through the same protections as any call."""
    return call_provider(provider, lambda c: c.list_models())


def provider_bulk(*, ids: list[int], action: str, actor: Any) -> dict[str, Any]:
    """enable | disable | test | delete over many providers; a per-item report."""
    report: dict[str, Any] = {"action": action, "results": []}
    for provider in ProviderConfig.objects.filter(pk__in=ids).order_by("pk"):
        item: dict[str, Any] = {"id": provider.pk, "name": provider.name}
        try:
            if action in ("enable", "disable"):
                provider_update(
                    provider=provider, actor=actor, enabled=action == "enable"
                )
                item["status"] = "ok"
            elif action == "test":
                tested = provider_test(provider=provider, actor=actor)
                item["status"] = tested.last_health_status
                item["error"] = tested.last_health_error
            elif action == "delete":
                provider_delete(provider=provider, actor=actor)
                item["status"] = "deleted"
        except ConflictError as exc:
            item["status"] = "failed"
            item["error"] = exc.message
        report["results"].append(item)
    missing = set(ids) - {r["id"] for r in report["results"]}
    report["results"] += [{"id": i, "status": "not_found"} for i in sorted(missing)]
    return report
