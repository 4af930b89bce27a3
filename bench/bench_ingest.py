"""Benchmark item 3: log ingest through ModelHub's writer into a partitioned group
table, against raw psycopg COPY into the same table.

  copy       one COPY ... FROM STDIN of N rows, one transaction (the baseline)
  log_write  apps.inference.writer.log_write, N calls: what every prediction pays
             (write-through: one transaction per row, synchronous_commit as
             configured, "off" by default)
  spool      the same N calls with INFERENCE_LOG_MODE=spool, until the last row is
             in the table: this process only appends, and a drain process
             (`drain_inference_spool --follow`) copies, as under gunicorn
             (INFERENCE_SPOOL_HOST_DRAIN, the default)
  spool_thread  context: the same with the drain in a thread of this process, as
             each web worker did before (INFERENCE_SPOOL_HOST_DRAIN=false)
  insert     context only: raw psycopg, one INSERT per row in its own transaction
             with the same SET LOCAL, no Django: how much of the gap is the per-row
             transaction itself rather than the writer's Python

Rows are shaped like real predictions of the demo group (30 features in, a class
and its probabilities out), each with a fresh UUIDv7 (today's partition).
"""

from __future__ import annotations

import os
import subprocess
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
    from apps.inference import spool as spool_module
    from apps.inference.drain_process import command as drain_command
    from apps.inference.spool import Spool
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

    # A web worker's spool as each configuration has it (directories of their own).
    spool_dir = Path(settings.INFERENCE_SPOOL_DIR)
    relayed = Spool(spool_dir / "relay")
    relayed.start(relay=True)  # appends only
    threaded = Spool(spool_dir / "thread")
    threaded.start()  # drains its own file in a thread
    drain = subprocess.Popen(  # noqa: S603 - our interpreter, fixed args
        drain_command(os.getpid(), relayed.directory), env=h.bench_env(state)
    )

    def run_writer(spool: Spool | None = None) -> dict[str, float]:
        batch = rows(count)
        done = 0
        if spool is not None:
            settings.INFERENCE_LOG_MODE = "spool"
            spool_module._spool = spool
        try:
            t0 = time.perf_counter()
            for row in batch:
                log_write(group_id, row)
                done += 1
                if time.perf_counter() - t0 > seconds:
                    break
            if spool is not None:  # until the last row is in the table
                spool.flush()
            elapsed = time.perf_counter() - t0
        finally:
            settings.INFERENCE_LOG_MODE = "direct"
            spool_module._spool = None
        return {"rows_per_s": done / elapsed}

    def run_spool() -> dict[str, float]:
        return run_writer(relayed)

    def run_spool_thread() -> dict[str, float]:
        return run_writer(threaded)

    # The organisation itself, as a request has it (the spool's lines name it).
    with tenant_context(Organization.objects.get(schema_name=h.TENANT)):

        def warmup() -> None:
            for fn in (run_copy, run_writer, run_spool, run_spool_thread, run_insert):
                fn()

        try:
            results = h.ab_rounds(
                {
                    "copy": run_copy,
                    "log_write": run_writer,
                    "spool": run_spool,
                    "spool_thread": run_spool_thread,
                    "insert": run_insert,
                },
                warmup=warmup,
                label="ingest",
            )
        finally:
            relayed.stop()  # lets go of its file: the drain process copies, removes it
            threaded.stop()
            drain.terminate()
            drain.wait(timeout=30)
    raw.close()

    def paired(b: str) -> float:
        return h.paired(results, "copy", b, "rows_per_s", "ratio")

    def rps(variant: str) -> float:
        return float(results[variant]["median"]["rows_per_s"])

    copy_rps = rps("copy")
    mode = settings.INFERENCE_LOG_SYNCHRONOUS_COMMIT
    out = [
        h.Row(
            id=row_id,
            what=what,
            baseline=f"COPY {copy_rps:,.0f} rows/s",
            measured=f"{rps(variant):,.0f} rows/s",
            delta=f"{paired(variant):.1%} of COPY",
            goal=">= 80 % of COPY" if judged else "(context)",
            passed=paired(variant) >= 0.80 if judged else None,
            data={"ratio": paired(variant), "rows_per_round": count},
        )
        for row_id, what, variant, judged in (
            (
                "3",
                f"log ingest, writer (direct mode, sync commit {mode})",
                "log_write",
                True,
            ),
            (
                "3 spool",
                "log ingest, writer (spool mode), until in the table",
                "spool",
                True,
            ),
            (
                "3 ctx",
                "spool mode, the drain in the writing process",
                "spool_thread",
                False,
            ),
            ("3 ctx", "raw psycopg INSERT, 1 row/transaction", "insert", False),
        )
    ]
    h.result_write(
        SECTION, out, {"quick": args.quick, "rows_per_round": count, "results": results}
    )
    print(h.table(out))


if __name__ == "__main__":
    main()
