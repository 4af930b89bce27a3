"""Concurrency (reliability item 9). Ten concurrent promotions leave one champion:
tests/groups/test_promotion.py. Here: concurrent weight edits on committed data never
break sum-to-100, and 10,000 tenant switches with rollbacks inside nested atomic
blocks never leave the connection in the wrong schema."""

from __future__ import annotations

import random
import threading

import pytest
from django.db import connection, connections, transaction
from django_tenants.utils import schema_context

from apps.core.errors import ApplicationError
from apps.groups.models import Membership, ModelGroup
from apps.groups.services import members_set
from apps.tenants.demo import DEMO_GROUP, seed_demo_content
from tests.reliability.reliability_helpers import committed_tenant

THREADS = 8
EDITS_PER_THREAD = 25


def _routed_sums(slug: str) -> tuple[int, int]:
    """(sum of active routed weights, active champions) as committed right now."""
    with schema_context(slug), connection.cursor() as cursor:
        cursor.execute(
            "SELECT coalesce(sum(weight), 0),"
            " count(*) FILTER (WHERE role = 'champion')"
            " FROM groups_membership m JOIN groups_modelgroup g ON g.id = m.group_id"
            " WHERE g.slug = %s AND m.active AND m.role <> 'shadow'",
            [DEMO_GROUP],
        )
        total, champions = cursor.fetchone()
    return int(total), int(champions)


@pytest.mark.slow
def test_concurrent_weight_edits_keep_sum_100(django_db_setup, django_db_blocker):
    with django_db_blocker.unblock(), committed_tenant("relconc") as slug:
        with schema_context(slug):
            group = seed_demo_content(actor="test")
            versions = list(
                Membership.objects.filter(group=group)
                .order_by("id")
                .values_list("version_id", flat=True)
            )
        applied = refused = 0
        observed: list[tuple[int, int]] = []
        errors: list[BaseException] = []
        lock = threading.Lock()
        stop = threading.Event()

        def edit(seed: int) -> None:
            nonlocal applied, refused
            rng = random.Random(seed)
            try:
                for _ in range(EDITS_PER_THREAD):
                    weight = rng.randint(0, 100)
                    # One edit in four is wrong on purpose (sums to 90): refused.
                    other = 100 - weight - (10 if rng.random() < 0.25 else 0)
                    champion, challenger = rng.sample(versions, 2)
                    try:
                        with schema_context(slug):
                            members_set(
                                group=ModelGroup.objects.get(slug=DEMO_GROUP),
                                actor="test",
                                members=[
                                    {
                                        "version_id": champion,
                                        "role": "champion",
                                        "weight": weight,
                                    },
                                    {
                                        "version_id": challenger,
                                        "role": "challenger",
                                        "weight": other,
                                    },
                                ],
                            )
                        with lock:
                            applied += 1
                    except ApplicationError:
                        with lock:
                            refused += 1
            except BaseException as exc:  # reported below
                errors.append(exc)
            finally:
                connections.close_all()

        def watch() -> None:
            try:
                while not stop.is_set():
                    observed.append(_routed_sums(slug))
            finally:
                connections.close_all()

        watcher = threading.Thread(target=watch)
        watcher.start()
        editors = [threading.Thread(target=edit, args=(i,)) for i in range(THREADS)]
        for thread in editors:
            thread.start()
        for thread in editors:
            thread.join(timeout=120)
        stop.set()
        watcher.join(timeout=30)
        final = _routed_sums(slug)
    assert not errors, errors[:3]
    assert applied + refused == THREADS * EDITS_PER_THREAD
    assert applied > 0 and refused > 0
    assert len(observed) > 10
    assert set(observed) == {(100, 1)}, sorted(set(observed))[:5]
    assert final == (100, 1)


SWITCHES = 10_000


class _Rollback(Exception):
    pass


def _sql_schema() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_schema()")
        return str(cursor.fetchone()[0])


@pytest.mark.slow
def test_tenant_switches_with_nested_rollbacks_keep_the_right_schema(
    tenant_a, tenant_b
):
    schemas = ("alpha", "beta")
    wrong: list[tuple[int, str, str]] = []
    for i in range(SWITCHES):
        outer, inner = schemas[i % 2], schemas[(i + 1) % 2]
        with schema_context(outer), transaction.atomic():
            try:
                # search_path is SET inside the savepoint, then rolled back with it
                with transaction.atomic(), schema_context(inner):
                    if _sql_schema() != inner:
                        wrong.append((i, inner, "inner"))
                    raise _Rollback
            except _Rollback:
                pass
            seen = _sql_schema()
            if seen != outer or connection.schema_name != outer:
                wrong.append((i, outer, seen))
        if i % 100 == 0:
            connection.set_schema_to_public()
            if _sql_schema() != "public":
                wrong.append((i, "public", _sql_schema()))
    assert wrong == []
    assert connection.schema_name == "public"
