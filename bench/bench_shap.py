"""Benchmark item 5: SHAP explanations of the demo group's tree model (the
challenger: GradientBoostingClassifier, 60 trees, on the breast-cancer data).

Per request, one row, timed per call in alternating rounds:
  predict      the model's own `predict_proba` on a one-row matrix (the baseline; the
               same in-memory model the product loads, through `artifact_load`)
  explain      `apps.inference.explain.explain_rows(version_id, [row], serving=...)`:
               what the inline `explain: true` path computes, with the version the
               serving route holds (explainer from the per-process cache, the
               matrix, TreeExplainer)
  shap only    context: the cached explainer on the prebuilt one-row matrix (no
               database, no matrix building)

Background explanations, one process:
  compute      `explain_rows` on batches of 1,000 rows (what `explain_pending` calls
               per batch), rows per second of wall time and per CPU-second (= per
               core: the explainer runs on one thread)
  end to end   `apps.inference.tasks.explain_pending` over N sampled rows written to
               the demo group's table (SELECT ... FOR UPDATE SKIP LOCKED, explain,
               importance upsert, one UPDATE per batch; the batches take turns on two
               connections, one stored while the next is computed), against the
               goal; the rows are deleted afterwards. Three rounds, the median
               reported; a context row counts the CPU of this process and of the
               PostgreSQL server together
  predict      context: `predict_proba` on the same batches
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness as h

SECTION = "shap"
BATCH = 1000
GOAL_ROWS_PER_S = 10_000


def main() -> None:
    args = h.parse_args(__doc__ or "")
    calls = 100 if args.quick else 300
    batches = 2 if args.quick else 5
    e2e_rows = 2000 if args.quick else 10_000
    state = h.prepare(fresh=args.fresh)
    h.django_setup(state)

    import numpy as np
    import psycopg
    from django_tenants.utils import schema_context
    from psycopg import sql

    from apps.groups.models import Membership
    from apps.groups.serving import _matrix, group_route
    from apps.inference.explain import explain_rows, explainer_for_version
    from apps.inference.tables import table_name
    from apps.inference.tasks import explain_pending
    from apps.registry.artifacts import artifact_load
    from apps.registry.models import ModelArtifact, ModelVersion

    rows = h.demo_rows(569)
    out: list[h.Row] = []
    meta: dict[str, Any] = {"quick": args.quick}

    with schema_context(h.TENANT):
        member = Membership.objects.get(group_id=state["group_id"], role="challenger")
        version = ModelVersion.objects.get(pk=member.version_id)
        model = artifact_load(
            ModelArtifact.objects.get(
                version_id=version.pk, role=ModelArtifact.Role.MODEL
            )
        )
        kind = type(model).__name__
        explainer = explainer_for_version(version.pk)
        assert explainer.method == "tree", (kind, explainer.method)
        schema = list(version.input_schema)
        serving = group_route(member.group.slug).versions[version.pk]
        one_rows = [[r] for r in rows[:50]]
        one_matrices = [_matrix(schema, r) for r in one_rows]

        # The explanation is right: base + contributions = the model's log-odds.
        check = explain_rows(version.pk, one_rows[0])[0]
        margin = float(model.decision_function(one_matrices[0])[0])
        assert abs(check["output"] - margin) < 1e-6, (check["output"], margin)

        def per_call_us(fn: Any, items: list[Any]) -> dict[str, float]:
            n = len(items)
            t0 = time.perf_counter()
            for i in range(calls):
                fn(items[i % n])
            return {"us": (time.perf_counter() - t0) / calls * 1e6}

        results = h.ab_rounds(
            {
                "predict": lambda: per_call_us(model.predict_proba, one_matrices),
                "explain": lambda: per_call_us(
                    lambda r: explain_rows(version.pk, r, serving=serving), one_rows
                ),
                "shap_only": lambda: per_call_us(explainer.explain, one_matrices),
            },
            warmup=lambda: [
                per_call_us(f, i)
                for f, i in (
                    (model.predict_proba, one_matrices),
                    (
                        lambda r: explain_rows(version.pk, r, serving=serving),
                        one_rows,
                    ),
                )
            ],
            label="shap per request",
        )
        meta["per_request"] = results

        def ratio(name: str) -> float:
            return h.paired(results, "predict", name, "us", "ratio")

        predict_us = results["predict"]["median"]["us"]
        explain_us = results["explain"]["median"]["us"]
        shap_us = results["shap_only"]["median"]["us"]
        r_explain, r_shap = ratio("explain"), ratio("shap_only")
        out.append(
            h.Row(
                id="5",
                what=f"per-request SHAP, 1 row ({kind}, explain_rows)",
                baseline=f"predict_proba {predict_us / 1000:.3f} ms",
                measured=f"{explain_us / 1000:.3f} ms",
                delta=f"{r_explain:.2f}x predict",
                goal="<= 1x predict",
                passed=r_explain <= 1.0,
                data={"ratio": r_explain},
            )
        )
        out.append(
            h.Row(
                id="5 ctx",
                what="  of which TreeExplainer alone (no DB, prebuilt matrix)",
                baseline=f"predict_proba {predict_us / 1000:.3f} ms",
                measured=f"{shap_us / 1000:.3f} ms",
                delta=f"{r_shap:.2f}x predict",
                goal="(context)",
                passed=None,
                data={"ratio": r_shap},
            )
        )

        # --- background: batches of 1,000 rows -------------------------------------
        batch_rows = [rows[i % len(rows)] for i in range(BATCH)]
        batch_matrix = _matrix(schema, batch_rows)

        def batch_rate(fn: Any) -> dict[str, float]:
            wall, cpu = time.perf_counter(), time.process_time()
            for _ in range(batches):
                fn()
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            done = batches * BATCH
            return {"rows_per_s": done / wall, "rows_per_cpu_s": done / cpu}

        background = h.ab_rounds(
            {
                "predict": lambda: batch_rate(
                    lambda: model.predict_proba(batch_matrix)
                ),
                "explain": lambda: batch_rate(
                    lambda: explain_rows(version.pk, batch_rows)
                ),
            },
            warmup=lambda: explain_rows(version.pk, batch_rows),
            label="shap background",
        )
        meta["background"] = background
        wall_rate = background["explain"]["median"]["rows_per_s"]
        cpu_rate = background["explain"]["median"]["rows_per_cpu_s"]
        predict_rate = background["predict"]["median"]["rows_per_s"]
        out.append(
            h.Row(
                id="5",
                what=f"background SHAP, batches of {BATCH:,} (explain_rows)",
                baseline=f"predict_proba {predict_rate:,.0f} rows/s",
                measured=f"{wall_rate:,.0f} rows/s, {cpu_rate:,.0f} rows/CPU-s",
                delta=f"{cpu_rate / GOAL_ROWS_PER_S:.0%} of goal per core",
                goal=">= 10k rows/s per core",
                passed=cpu_rate >= GOAL_ROWS_PER_S,
                data={"rows_per_s": wall_rate, "rows_per_cpu_s": cpu_rate},
            )
        )

        # --- end to end: explain_pending over sampled rows in the table -------------
        table = sql.Identifier(h.TENANT, table_name(state["group_id"]))
        raw = psycopg.connect(h.database_url(), autocommit=True)
        inputs = [json.dumps(r) for r in rows[:50]]

        def end_to_end() -> dict[str, float]:
            raw.execute(
                sql.SQL(
                    "INSERT INTO {} (request_id, ts, member_id, version_id, role, "
                    "status, requester, door, latency_ms, input, output, "
                    "explain_requested) "
                    "SELECT gen_random_uuid(), now() - (i || ' milliseconds')::interval, "
                    "%s, %s, 'challenger', 'ok', 'bench-shap', 'rest', 4.0, "
                    "(%s::jsonb[])[1 + i %% 50], '{{\"prediction\": 1}}', true "
                    "FROM generate_series(1, %s) AS i"
                ).format(table),
                [member.pk, version.pk, inputs, e2e_rows],
            )
            try:
                backend = backend_cpu_seconds()
                wall, cpu = time.perf_counter(), time.process_time()
                done = explain_pending(
                    state["group_id"], batch=BATCH, budget_seconds=600
                )
                wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
                backend = backend_cpu_seconds() - backend
                left = raw.execute(
                    sql.SQL(
                        "SELECT count(*) FILTER (WHERE explanation IS NULL), "
                        "count(*) FILTER (WHERE (explanation->>'output')::float8 "
                        "IS NOT NULL) FROM {} WHERE requester = 'bench-shap'"
                    ).format(table)
                ).fetchone()
                assert left is not None and left[0] == 0 and left[1] == e2e_rows, left
            finally:
                raw.execute(
                    sql.SQL("DELETE FROM {} WHERE requester = 'bench-shap'").format(
                        table
                    )
                )
                # Clean-up, untimed: the next round starts from the table the first
                # one found, not from its dead rows and index entries.
                raw.execute(sql.SQL("VACUUM (ANALYZE) {}").format(table))
            return {
                "rows": done,
                "rows_per_s": done / wall,
                "rows_per_cpu_s": done / cpu,
                "wall_s": wall,
                "cpu_s": cpu,
                "backend_cpu_s": backend,
            }

        # Three rounds of e2e_rows each (one is one number of a noisy machine); the
        # median round is reported.
        rounds = sorted((end_to_end() for _ in range(3)), key=lambda r: r["rows_per_s"])
        raw.close()
        e2e = rounds[1]
        meta["end_to_end_rounds"] = rounds
        done, wall, cpu, backend = (
            int(e2e["rows"]),
            e2e["wall_s"],
            e2e["cpu_s"],
            e2e["backend_cpu_s"],
        )
        spread = f"{rounds[0]['rows_per_s']:,.0f}-{rounds[-1]['rows_per_s']:,.0f}"
        # The database's share of the work happens in other processes: wall time is
        # the judged figure (one worker process; its batches overlap on two
        # connections, as the task runs in production). The context row counts the
        # CPU of this process and of the PostgreSQL server's, when the server runs on
        # this machine.
        out.append(
            h.Row(
                id="5",
                what=f"background SHAP end to end, explain_pending, {done:,} rows"
                " (median of 3)",
                baseline=f"compute only {wall_rate:,.0f} rows/s",
                measured=f"{done / wall:,.0f} rows/s ({done / cpu:,.0f} rows/CPU-s)",
                delta=f"{done / wall / GOAL_ROWS_PER_S:.0%} of goal (rounds {spread})",
                goal=">= 10k rows/s per core",
                passed=done / wall >= GOAL_ROWS_PER_S,
                data={"rows": done, "wall_s": wall, "cpu_s": cpu, "rounds": rounds},
            )
        )
        if backend == backend:  # not NaN: the backend's CPU could be read
            both = cpu + backend
            out.append(
                h.Row(
                    id="5 ctx",
                    what="  the same, rows per CPU-second of worker + PostgreSQL",
                    baseline=f"worker {cpu:.2f} s + server {backend:.2f} s CPU",
                    measured=f"{done / both:,.0f} rows/CPU-s",
                    delta=f"{done / both / GOAL_ROWS_PER_S:.0%} of goal",
                    goal="(context)",
                    passed=None,
                    data={"backend_cpu_s": backend, "rows_per_cpu_s_both": done / both},
                )
            )
    meta["load_avg"] = h.machine().get("load_avg")
    meta["numpy"] = np.__version__
    h.result_write(SECTION, out, meta)
    print(h.table(out))


def backend_cpu_seconds() -> float:
    """CPU seconds used so far by the PostgreSQL server's processes: its children
    running (this process's backends among them) and those that ended (counted in
    the postmaster's children's time once reaped; `explain_pending` opens two
    connections of its own and closes them before it returns). Other clients and the
    server's background processes count too: on the bench database while this runs,
    that is little. NaN when the server is not on this machine."""
    import os
    from pathlib import Path

    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        pid = cursor.fetchone()[0]
    tick = os.sysconf("SC_CLK_TCK")

    def stat(process: int | str) -> tuple[str, list[str]] | None:
        try:
            text = Path(f"/proc/{process}/stat").read_text()
        except OSError:
            return None
        name, rest = text.split(" (", 1)[1].rsplit(")", 1)
        return name, rest.split()

    own = stat(pid)
    if own is None or "postgres" not in own[0]:  # a remote server's pid
        return float("nan")
    postmaster = own[1][1]  # the parent's pid
    main = stat(postmaster)
    if main is None:
        return float("nan")
    # utime, stime, and the reaped children's cutime, cstime
    total = sum(int(v) for v in main[1][11:15])
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            child = stat(entry.name)
            if child is not None and child[1][1] == postmaster:
                total += int(child[1][11]) + int(child[1][12])
    return total / tick


if __name__ == "__main__":
    main()
