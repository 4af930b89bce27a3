"""Profile the product functions behind items 5 and 7 with pyinstrument, in this
process, on the bench database (not part of `make bench`):

    .venv/bin/pip install pyinstrument      # a profiling tool, not a dependency
    .venv/bin/python bench/profile_items.py explain|explain-pending|tenant-create

  explain          200 calls of `explain_rows` on one row of the demo tree model
  explain-pending  `explain_pending` over 3,000 sampled rows (written, then deleted)
  tenant-create    one `tenant_create` (after a warm-up one), deleted again

Item 4's product path is profiled with py-spy on the running benchmark instead (its
data exists only while bench_comparison.py runs): during its rounds,
`.venv/bin/py-spy record -p <pid> --idle -f raw -o comparison.raw -d 120`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness as h


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "target", choices=["explain", "explain-pending", "tenant-create"]
    )
    args = parser.parse_args()
    try:
        from pyinstrument import Profiler
    except ImportError:
        raise SystemExit("pyinstrument is not installed (see the docstring)") from None
    state = h.prepare()
    h.django_setup(state)

    import psycopg
    from django_tenants.utils import schema_context
    from psycopg import sql

    from apps.groups.models import Membership
    from apps.inference.explain import explain_rows
    from apps.inference.tables import table_name
    from apps.inference.tasks import explain_pending
    from apps.tenants.services import tenant_create, tenant_delete

    rows = h.demo_rows(50)
    profiler = Profiler(interval=0.0005)
    if args.target == "tenant-create":
        tenant_create(slug="benchq_pw", name="w", admin_email="a@w.bench.test")
        tenant_delete(slug="benchq_pw")
        profiler.start()
        tenant_create(slug="benchq_pp", name="p", admin_email="a@p.bench.test")
        profiler.stop()
        tenant_delete(slug="benchq_pp")
    else:
        with schema_context(h.TENANT):
            member = Membership.objects.get(
                group_id=state["group_id"], role="challenger"
            )
            explain_rows(member.version_id, rows[:1])  # builds the explainer
            if args.target == "explain":
                profiler.start()
                for i in range(200):
                    explain_rows(member.version_id, [rows[i % len(rows)]])
                profiler.stop()
            else:
                table = sql.Identifier(h.TENANT, table_name(state["group_id"]))
                with psycopg.connect(h.database_url(), autocommit=True) as raw:
                    raw.execute(
                        sql.SQL(
                            "INSERT INTO {} (request_id, ts, member_id, version_id, "
                            "role, status, requester, door, input, explain_requested) "
                            "SELECT gen_random_uuid(), now() - i * interval '1 ms', "
                            "%s, %s, 'challenger', 'ok', 'bench-profile', 'rest', "
                            "(%s::jsonb[])[1 + i %% 50], true "
                            "FROM generate_series(1, 3000) AS i"
                        ).format(table),
                        [
                            member.pk,
                            member.version_id,
                            [json.dumps(r) for r in rows],
                        ],
                    )
                    try:
                        profiler.start()
                        explain_pending(state["group_id"], batch=1000)
                        profiler.stop()
                    finally:
                        raw.execute(
                            sql.SQL(
                                "DELETE FROM {} WHERE requester = 'bench-profile'"
                            ).format(table)
                        )
    print(profiler.output_text(unicode=False, color=False))


if __name__ == "__main__":
    main()
