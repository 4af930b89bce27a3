"""Group reads for the pages: the list filter, traffic in the last 24 hours from a
group's inference table, the table's status and the versions a group can take."""

from __future__ import annotations

from datetime import timedelta

import django_filters
from django.db import connection
from django.db.models import QuerySet
from django.utils import timezone
from psycopg import sql

from apps.core.db import assert_tenant_schema
from apps.groups.models import Membership, ModelGroup
from apps.inference import tables
from apps.registry.models import ModelVersion


class GroupFilter(django_filters.FilterSet):
    status = django_filters.ChoiceFilter(
        choices=ModelGroup.Status.choices, empty_label="any"
    )
    strategy = django_filters.ChoiceFilter(
        choices=ModelGroup.Strategy.choices, empty_label="any"
    )

    class Meta:
        model = ModelGroup
        fields = ["status", "strategy"]


def group_list() -> QuerySet[ModelGroup]:
    """Groups with their members' versions and table record, for list and detail."""
    return ModelGroup.objects.select_related("inference_table").prefetch_related(
        "members__version__model"
    )


ROLE_ORDER = {"champion": 0, "challenger": 1, "shadow": 2}


def members_in_order(group: ModelGroup) -> list[Membership]:
    """Champion first, then challengers, then shadows (the model orders by role name)."""
    return sorted(group.members.all(), key=lambda m: (ROLE_ORDER[m.role], m.pk))


def has_inference_table(group: ModelGroup) -> bool:
    """Only a group that was activated once owns a table (and its record)."""
    return hasattr(group, "inference_table")


def group_requests_24h(*, group: ModelGroup) -> int | None:
    """Routed requests logged in the last 24 hours (shadow copies left out), or
    None for a group that has no inference table yet."""
    if not has_inference_table(group):
        return None
    schema = assert_tenant_schema()
    query = sql.SQL("SELECT count(*) FROM {} WHERE ts > %s AND NOT shadow").format(
        sql.Identifier(schema, tables.table_name(group.pk))
    )
    with connection.cursor() as cursor:
        cursor.execute(query, [timezone.now() - timedelta(hours=24)])
        return int(cursor.fetchone()[0])


def inference_table_status(*, group: ModelGroup) -> tables.TableStatus | None:
    """Partitions, default-partition rows and size of the group's table, if any."""
    if not has_inference_table(group):
        return None
    return tables.status(group.pk)


def version_choices() -> list[tuple[int, str]]:
    """Every version a group may serve, labelled "model vN · source"."""
    rows = ModelVersion.objects.select_related("model", "provider").order_by(
        "model__name", "-number"
    )
    choices = []
    for v in rows:
        source = v.get_source_display()
        if v.provider is not None:
            source = f"{source}: {v.provider.name}"
        choices.append((v.pk, f"{v.model.name} v{v.number} · {source}"))
    return choices
