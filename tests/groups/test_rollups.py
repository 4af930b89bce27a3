"""Hourly rollups: recomputed from the inference table, incremental by watermark,
late feedback included, idempotent, tenant-scoped, and scheduled per tenant."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django_tenants.utils import schema_context

from apps.groups import stats
from apps.groups.models import MemberRollup, RollupWatermark
from apps.groups.rollups import rollups_refresh
from tests.groups.analytics_helpers import members_of, write_row
from tests.groups.group_helpers import demo_group  # noqa: F401

pytestmark = pytest.mark.django_db


def _hour(hours_ago: int) -> datetime:
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    return now - timedelta(hours=hours_ago)


def _rollups(group) -> dict[tuple[int, datetime], MemberRollup]:
    with schema_context("alpha"):
        return {
            (r.member_id, r.bucket_start): r
            for r in MemberRollup.objects.filter(group=group)
        }


def test_refresh_counts_requests_errors_latency_and_labels_per_member_hour(
    demo_group,  # noqa: F811
):
    m = members_of(demo_group)
    champ, chall = m["champion"], m["challenger"]
    h2, h1 = _hour(2), _hour(1)
    for i, latency in enumerate([10.0, 20.0, 30.0]):
        write_row(
            demo_group.pk,
            at=h2 + timedelta(minutes=i),
            member_id=champ.pk,
            version_id=champ.version_id,
            role="champion",
            latency_ms=latency,
            prediction=1,
            label=1 if i < 2 else 0,
        )
    write_row(
        demo_group.pk,
        at=h2 + timedelta(minutes=5),
        member_id=champ.pk,
        version_id=champ.version_id,
        role="champion",
        latency_ms=500.0,
        status="error",
    )
    write_row(
        demo_group.pk,
        at=h1 + timedelta(minutes=1),
        member_id=chall.pk,
        version_id=chall.version_id,
        role="challenger",
        latency_ms=7.0,
    )

    with schema_context("alpha"):
        written = rollups_refresh(group=demo_group)

    rows = _rollups(demo_group)
    assert written == 2
    a = rows[(champ.pk, h2)]
    assert (a.requests, a.errors, a.labelled, a.correct) == (4, 1, 3, 2)
    assert a.latency_sum_ms == pytest.approx(560.0)
    assert a.role == "champion" and a.version_id == champ.version_id
    assert sum(a.latency_hist) == 4
    assert a.latency_hist[stats.latency_bucket(500.0)] == 1
    assert a.latency_hist[stats.latency_bucket(10.0)] == 1
    b = rows[(chall.pk, h1)]
    assert (b.requests, b.errors, b.labelled, b.correct) == (1, 0, 0, 0)


def test_late_feedback_recomputes_an_old_hour_and_refresh_is_idempotent(
    demo_group,  # noqa: F811
):
    from apps.inference.writer import feedback_write

    champ = members_of(demo_group)["champion"]
    old = _hour(5)
    rid = write_row(
        demo_group.pk,
        at=old + timedelta(minutes=3),
        member_id=champ.pk,
        version_id=champ.version_id,
        role="champion",
        latency_ms=12.0,
        prediction=0,
    )
    with schema_context("alpha"):
        rollups_refresh(group=demo_group)
        # Pretend the refresh happened long after the row was written.
        RollupWatermark.objects.filter(group=demo_group).update(
            watermark=datetime.now(UTC) + timedelta(minutes=5)
        )
    assert _rollups(demo_group)[(champ.pk, old)].labelled == 0

    with schema_context("alpha"):
        assert rollups_refresh(group=demo_group) == 0  # nothing new
        RollupWatermark.objects.filter(group=demo_group).update(
            watermark=datetime.now(UTC) - timedelta(minutes=10)
        )
        feedback_write(demo_group.pk, [{"request_id": rid, "label": 0}])
        assert rollups_refresh(group=demo_group) == 1  # the old hour, again
        rollups_refresh(group=demo_group)  # re-reading changes nothing

    row = _rollups(demo_group)[(champ.pk, old)]
    assert (row.requests, row.labelled, row.correct) == (1, 1, 1)
    with schema_context("alpha"):
        rollups_refresh(group=demo_group, since=old)  # forced: same numbers
    again = _rollups(demo_group)[(champ.pk, old)]
    assert (again.requests, again.labelled, again.correct) == (1, 1, 1)


def test_regression_feedback_sums_absolute_and_squared_errors(
    demo_group,  # noqa: F811
):
    champ = members_of(demo_group)["champion"]
    h = _hour(3)
    for minute, (pred, truth) in enumerate([(2.0, 3.0), (5.0, 2.0)]):
        write_row(
            demo_group.pk,
            at=h + timedelta(minutes=minute),
            member_id=champ.pk,
            version_id=champ.version_id,
            role="champion",
            latency_ms=5.0,
            prediction=pred,
            value=truth,
        )
    with schema_context("alpha"):
        rollups_refresh(group=demo_group)
    row = _rollups(demo_group)[(champ.pk, h)]
    assert (row.valued, row.abs_error_sum, row.sq_error_sum) == (2, 4.0, 10.0)


def test_rollups_stay_in_their_tenant(demo_group, tenant_b):  # noqa: F811
    champ = members_of(demo_group)["champion"]
    write_row(
        demo_group.pk,
        at=_hour(1),
        member_id=champ.pk,
        version_id=champ.version_id,
        role="champion",
        latency_ms=5.0,
    )
    with schema_context("alpha"):
        rollups_refresh(group=demo_group)
        assert MemberRollup.objects.filter(group=demo_group).count() == 1
    with schema_context("beta"):
        assert MemberRollup.objects.count() == 0


def test_schedules_fan_out_one_task_per_tenant(tenant_a, tenant_b, monkeypatch):
    from apps.groups import analytics_tasks

    sent = []
    monkeypatch.setattr(
        analytics_tasks,
        "tenant_async",
        lambda path, schema_name, on_commit: sent.append((path, schema_name)),
    )
    count = analytics_tasks.rollups_refresh_all_tenants()
    analytics_tasks.promotion_auto_all_tenants()

    assert count >= 2
    assert ("apps.groups.rollups.rollups_refresh_tenant", "alpha") in sent
    assert ("apps.groups.promotion.promotion_auto_tenant", "beta") in sent
    assert all(schema != "public" for _, schema in sent)


def test_the_schedules_exist_every_five_minutes(db):
    from django_q.models import Schedule

    funcs = dict(
        Schedule.objects.filter(func__startswith="apps.groups.").values_list(
            "func", "minutes"
        )
    )
    assert funcs == {
        "apps.groups.analytics_tasks.rollups_refresh_all_tenants": 5,
        "apps.groups.analytics_tasks.promotion_auto_all_tenants": 5,
    }


def test_a_refresh_finds_the_hours_then_reads_them_with_one_aggregate_statement(
    demo_group,  # noqa: F811
):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    champ = members_of(demo_group)["champion"]
    for hours_ago in (1, 2, 3):
        write_row(
            demo_group.pk,
            at=_hour(hours_ago),
            member_id=champ.pk,
            version_id=champ.version_id,
            role="champion",
            latency_ms=5.0,
        )
    with schema_context("alpha"), CaptureQueriesContext(connection) as queries:
        assert rollups_refresh(group=demo_group) == 3
    table = f"inference_log_g{demo_group.pk}"
    reads = [
        q["sql"]
        for q in queries.captured_queries
        if table in q["sql"] and "to_regclass" not in q["sql"]
    ]
    assert len(reads) == 2
    assert "UNION" in reads[0] and "width_bucket" in reads[1]
    # the three touched hours are consecutive: one span
    assert reads[1].count("ts >= ") == 1
    # nothing new: the hours query alone, no aggregate
    with schema_context("alpha"), CaptureQueriesContext(connection) as queries:
        assert rollups_refresh(group=demo_group) == 0
    assert not [q for q in queries.captured_queries if "width_bucket" in q["sql"]]


def test_touched_hours_are_read_as_merged_spans():
    from datetime import UTC, datetime, timedelta

    from apps.groups.rollups import hour_spans

    h = datetime(2026, 11, 1, tzinfo=UTC)
    hours = [h, h + timedelta(hours=1), h + timedelta(hours=2), h + timedelta(hours=9)]
    assert hour_spans(hours) == [
        (h, h + timedelta(hours=3)),
        (h + timedelta(hours=9), h + timedelta(hours=10)),
    ]
    assert hour_spans([]) == []
