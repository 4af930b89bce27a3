"""Benchmark item 3: log ingest through ModelHub's writer into a partitioned group
table, against raw psycopg COPY into the same table.

  copy       one COPY ... FROM STDIN of N rows, one transaction (the baseline)
  log_write  apps.inference.writer.log_write, N calls: what every prediction pays
             (write-through: one transaction per row, synchronous_commit as
             configured, "off" by default)
  spool      the same N calls with INFERENCE_LOG_MODE=spool, until the last row is
             in the table (the spool's drain runs alongside, as in a web process)
  insert     context only: raw psycopg, one INSERT per row in its own transaction
             with the same SET LOCAL, no Django: how much of the gap is the per-row
             transaction itself rather than the writer's Python

Rows are shaped like real predictions of the demo group (30 features in, a class
and its probabilities out), each with a fresh UUIDv7 (today's partition).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness as h

SECTION = "ingest"


def main() -> None:
    args = h.parse_args(__doc__ or "")
    state = h.prepare(fresh=args.fresh)
    h.django_setup(state)

    import psycopg
    from django.conf import settings
    from django_tenants.utils import tenant_context
    from psycopg import sql
    from psycopg.types.json import Jsonb

    from apps.core.context import new_request_id
    from apps.inference.spool import process_spool
    from apps.inference.tables import table_name
    from apps.inference.writer import FIELDS, JSON_FIELDS, log_write, uuid7_time
    from apps.tenants.models import Organization

    # Rows per variant and round, or these seconds, whichever ends first.
    count, seconds = (500, 0.6) if args.quick else (3000, 2.0)
    group_id = state["group_id"]
    inputs = h.demo_rows(50)
    target = sql.Identifier(h.TENANT, table_name(group_id))
    columns = sql.SQL(", ").join(sql.Identifier(f) for f in FIELDS)
    copy_sql = sql.SQL("COPY {} ({}) FROM STDIN").format(target, columns)
    insert_sql = sql.SQL("INSERT INTO {} ({}) VALUES ({})").format(
        target, columns, sql.SQL(", ").join(sql.Placeholder() * len(FIELDS))
    )
    defaults = {
        "role": "",
        "requester": "",
        "door": "",
        "shadow": False,
        "input_truncated": False,
        "output_truncated": False,
        "explain_requested": False,
    }

    def rows(n: int) -> list[dict[str, Any]]:
        return [
            {
                "request_id": new_request_id(),
                "member_id": 1,
                "version_id": state["version_id"],
                "role": "champion",
                "requester": "api-key:bench",
                "door": "rest",
                "routing_key": state["routing_key"],
                "status": "ok",
                "latency_ms": 1.234,
                "model_latency_ms": 0.321,
                "input": inputs[i % len(inputs)],
                "output": {"prediction": 0, "probabilities": {"0": 0.98, "1": 0.02}},
            }
            for i in range(n)
        ]

    def raw_values(row: dict[str, Any]) -> list[Any]:
        row = {**row, "ts": uuid7_time(row["request_id"])}
        values = []
        for f in FIELDS:
            v = row.get(f, defaults.get(f))
            values.append(Jsonb(v) if f in JSON_FIELDS and v is not None else v)
        return values

    raw = psycopg.connect(h.database_url())

    def run_copy() -> dict[str, float]:
        # One COPY of the whole batch: the batch is what a time bound could not cut.
        batch = rows(count)
        t0 = time.perf_counter()
        with raw.transaction(), raw.cursor() as cur:
            cur.execute("SET LOCAL synchronous_commit TO OFF")
            with cur.copy(copy_sql) as copy:
                for row in batch:
                    copy.write_row(raw_values(row))
        return {"rows_per_s": count / (time.perf_counter() - t0)}

    def run_insert() -> dict[str, float]:
        batch = rows(count)
        done = 0
        t0 = time.perf_counter()
        with raw.cursor() as cur:
            for row in batch:
                with raw.transaction():
                    cur.execute("SET LOCAL synchronous_commit TO OFF")
                    cur.execute(insert_sql, raw_values(row))
                done += 1
                if time.perf_counter() - t0 > seconds:
                    break
        return {"rows_per_s": done / (time.perf_counter() - t0)}

    def run_writer(mode: str = "direct") -> dict[str, float]:
        batch = rows(count)
        done = 0
        settings.INFERENCE_LOG_MODE = mode
        if mode == "spool":
            process_spool().start()  # as a web worker does when it boots
        try:
            t0 = time.perf_counter()
            for row in batch:
                log_write(group_id, row)
                done += 1
                if time.perf_counter() - t0 > seconds:
                    break
            if mode == "spool":  # until the last row is in the table
                process_spool().flush()
            elapsed = time.perf_counter() - t0
        finally:
            settings.INFERENCE_LOG_MODE = "direct"
        return {"rows_per_s": done / elapsed}

    def run_spool() -> dict[str, float]:
        return run_writer("spool")

    # The organisation itself, as a request has it (the spool's lines name it).
    with tenant_context(Organization.objects.get(schema_name=h.TENANT)):

        def warmup() -> None:
            for fn in (run_copy, run_writer, run_spool, run_insert):
                fn()

        results = h.ab_rounds(
            {
                "copy": run_copy,
                "log_write": run_writer,
                "spool": run_spool,
                "insert": run_insert,
            },
            warmup=warmup,
            label="ingest",
        )
    raw.close()

    def paired(b: str) -> float:
        return h.paired(results, "copy", b, "rows_per_s", "ratio")

    copy_rps = results["copy"]["median"]["rows_per_s"]
    writer_rps = results["log_write"]["median"]["rows_per_s"]
    insert_rps = results["insert"]["median"]["rows_per_s"]
    spool_rps = results["spool"]["median"]["rows_per_s"]
    share, insert_share = paired("log_write"), paired("insert")
    spool_share = paired("spool")
    mode = settings.INFERENCE_LOG_SYNCHRONOUS_COMMIT
    out = [
        h.Row(
            id=row_id,
            what=what,
            baseline=f"COPY {copy_rps:,.0f} rows/s",
            measured=f"{rps:,.0f} rows/s",
            delta=f"{ratio:.1%} of COPY",
            goal=">= 80 % of COPY",
            passed=ratio >= 0.80,
            data={"ratio": ratio, "rows_per_round": count},
        )
        for row_id, what, rps, ratio in (
            (
                "3",
                f"log ingest, writer (direct mode, sync commit {mode})",
                writer_rps,
                share,
            ),
            (
                "3 spool",
                "log ingest, writer (spool mode), until in the table",
                spool_rps,
                spool_share,
            ),
        )
    ]
    out += [
        h.Row(
            id="3 ctx",
            what="raw psycopg INSERT, 1 row/transaction",
            baseline=f"COPY {copy_rps:,.0f} rows/s",
            measured=f"{insert_rps:,.0f} rows/s",
            delta=f"{insert_share:.1%} of COPY",
            goal="(context)",
            passed=None,
            data={"ratio": insert_share},
        ),
    ]
    h.result_write(
        SECTION, out, {"quick": args.quick, "rows_per_round": count, "results": results}
    )
    print(h.table(out))


if __name__ == "__main__":
    main()
