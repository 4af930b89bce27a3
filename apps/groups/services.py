"""Group writes: create, members (bulk, roles, weights), status. Every invariant is
checked here for a clear message and enforced again by the database."""

from __future__ import annotations

from typing import Any

from django.db import DatabaseError, IntegrityError, connection, transaction
from django.db.models import F
from django.utils import timezone
from django.utils.text import slugify

from apps.audit.services import audit_record
from apps.core.db import assert_tenant_schema
from apps.core.errors import ApplicationError, ConflictError
from apps.groups.models import Membership, ModelGroup
from apps.groups.serving import forget_route
from apps.registry.models import ModelVersion

RESERVED_SLUGS = {"new", "bulk"}


def _check_now() -> None:
    """Run the deferred invariant triggers now, inside the caller's transaction."""
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
            cursor.execute("SET CONSTRAINTS ALL DEFERRED")
    except (IntegrityError, DatabaseError) as exc:
        message = str(exc).split("\n", 1)[0]
        raise ApplicationError(
            message, code="invariant_violated", fields={"members": [message]}
        ) from exc


def _members_snapshot(group: ModelGroup) -> list[dict[str, Any]]:
    return [
        {
            "version": m.version_id,
            "role": m.role,
            "weight": m.weight,
            "active": m.active,
        }
        for m in group.members.order_by("id")
    ]


def validate_weights(members: list[dict[str, Any]]) -> None:
    """Active non-shadow weights sum to 100 and exactly one active champion."""
    routed = [m for m in members if m.get("active", True) and m["role"] != "shadow"]
    total = sum(int(m.get("weight", 0)) for m in routed)
    champions = [m for m in routed if m["role"] == "champion"]
    problems = []
    if total != 100:
        problems.append(f"the weights of active members sum to {total}, not 100")
    if len(champions) != 1:
        problems.append(
            f"an active group needs exactly one champion, not {len(champions)}"
        )
    if any(m["role"] == "shadow" and int(m.get("weight", 0)) for m in members):
        problems.append("shadow members take no weight")
    if problems:
        raise ApplicationError(
            "; ".join(problems).capitalize() + ".",
            code="invalid",
            fields={"members": problems},
        )


@transaction.atomic
def group_create(*, name: str, actor: Any, slug: str = "", **fields: Any) -> ModelGroup:
    assert_tenant_schema()
    slug = slugify(slug or name)[:100]
    if not slug or slug in RESERVED_SLUGS:
        raise ApplicationError(
            f"'{slug}' cannot be a group slug.",
            code="invalid",
            fields={"slug": ["choose another slug"]},
        )
    if (
        ModelGroup.objects.filter(slug=slug).exists()
        or ModelGroup.objects.filter(name=name).exists()
    ):
        raise ConflictError(
            "A group with this name or slug exists.", fields={"slug": ["taken"]}
        )
    if "retention_days" not in fields:
        from apps.inference.retention import default_retention_days

        fields["retention_days"] = default_retention_days()
    group = ModelGroup.objects.create(
        name=name, slug=slug, created_by=str(actor)[:254], **fields
    )
    audit_record(
        actor=actor,
        action="group.create",
        obj=group,
        after={"name": name, "slug": slug, "strategy": group.strategy},
    )
    return group


@transaction.atomic
def group_update(*, group: ModelGroup, actor: Any, **fields: Any) -> ModelGroup:
    assert_tenant_schema()
    group = ModelGroup.objects.select_for_update().get(pk=group.pk)
    before = {k: getattr(group, k) for k in fields}
    for key, value in fields.items():
        setattr(group, key, value)
    group.routing_version = F("routing_version") + 1
    group.save()
    forget_route(group.slug)
    group.refresh_from_db()
    audit_record(
        actor=actor,
        action="group.update",
        obj=group,
        before=_jsonable(before),
        after=_jsonable(fields),
    )
    return group


def _jsonable(data: dict[str, Any]) -> dict[str, Any]:
    return {
        k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in data.items()
    }


@transaction.atomic
def members_set(
    *, group: ModelGroup, members: list[dict[str, Any]], actor: Any
) -> list[Membership]:
    """Replace the group's member list in one step: [{"version_id", "role", "weight",
    "active"?}]. Used for bulk add, role changes and weight updates."""
    assert_tenant_schema()
    group = ModelGroup.objects.select_for_update().get(pk=group.pk)
    before = _members_snapshot(group)
    versions = [m["version_id"] for m in members]
    if len(set(versions)) != len(versions):
        raise ApplicationError(
            "A version can be in a group only once.",
            code="invalid",
            fields={"members": ["duplicate version"]},
        )
    known = set(
        ModelVersion.objects.filter(pk__in=versions).values_list("pk", flat=True)
    )
    missing = sorted(set(versions) - known)
    if missing:
        raise ApplicationError(
            f"Unknown model versions: {missing}.",
            code="invalid",
            fields={"members": [f"unknown version {v}" for v in missing]},
        )
    for m in members:
        if m["role"] not in Membership.Role.values:
            raise ApplicationError(
                f"Unknown role '{m['role']}'.",
                code="invalid",
                fields={"members": [f"role must be one of {Membership.Role.values}"]},
            )
        if not 0 <= int(m.get("weight", 0)) <= 100:
            raise ApplicationError(
                "Weights are 0-100.",
                code="invalid",
                fields={"members": ["weight out of range"]},
            )
    if group.status == ModelGroup.Status.ACTIVE:
        validate_weights(members)
    # What no group may hold, draft or not: named here, not left to a constraint (500).
    champions = [
        m for m in members if m["role"] == "champion" and m.get("active", True)
    ]
    if len(champions) > 1:
        raise ApplicationError(
            f"A group has one active champion, not {len(champions)}.",
            code="invalid",
            fields={"members": [f"{len(champions)} active champions"]},
        )
    if any(m["role"] == "shadow" and int(m.get("weight", 0)) for m in members):
        raise ApplicationError(
            "Shadow members take no weight.",
            code="invalid",
            fields={"members": ["shadow members take no weight"]},
        )
    existing = {m.version_id: m for m in group.members.all()}
    keep = set(versions)
    Membership.objects.filter(group=group).exclude(version_id__in=keep).delete()
    # Demote first so that the one-champion index never sees two champions mid-swap.
    Membership.objects.filter(group=group, role="champion").update(active=False)
    result = []
    for m in members:
        current = existing.get(m["version_id"])
        values = {
            "role": m["role"],
            "weight": int(m.get("weight", 0)),
            "active": bool(m.get("active", True)),
        }
        if current is None:
            result.append(
                Membership.objects.create(
                    group=group, version_id=m["version_id"], **values
                )
            )
        else:
            for key, value in values.items():
                setattr(current, key, value)
            current.save()
            result.append(current)
    ModelGroup.objects.filter(pk=group.pk).update(
        routing_version=F("routing_version") + 1
    )
    forget_route(group.slug)
    _check_now()
    audit_record(
        actor=actor,
        action="group.members",
        obj=group,
        before={"members": before},
        after={"members": _members_snapshot(group)},
    )
    return result


@transaction.atomic
def group_set_status(*, group: ModelGroup, status: str, actor: Any) -> ModelGroup:
    """Activating checks the members and provisions the group's inference table."""
    from apps.inference.services import inference_table_ensure

    assert_tenant_schema()
    if status not in ModelGroup.Status.values:
        raise ApplicationError(
            f"Unknown status '{status}'.",
            code="invalid",
            fields={"status": [f"one of {ModelGroup.Status.values}"]},
        )
    group = ModelGroup.objects.select_for_update().get(pk=group.pk)
    before = group.status
    if status == ModelGroup.Status.ACTIVE:
        validate_weights(_members_snapshot(group))
        inference_table_ensure(group=group)
        if group.test_start is None:
            group.test_start = timezone.now()
    group.status = status
    group.routing_version = F("routing_version") + 1
    group.save()
    forget_route(group.slug)
    group.refresh_from_db()
    _check_now()
    audit_record(
        actor=actor,
        action="group.status",
        obj=group,
        before={"status": before},
        after={"status": status},
    )
    return group
