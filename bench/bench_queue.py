"""Benchmark item 7: the job queue, tenant creation and `migrate_schemas` over many
tenants. Absolute figures (there is no baseline for them); the queue's poll
interval, which bounds the latency from below, is printed with them.

  queue       a real `manage.py qcluster` (django-q2, ORM broker, the project's
              Q_CLUSTER settings) on the bench database. N tenant tasks are enqueued
              through `apps.core.tasks.tenant_async` at random intervals (0-0.4 s:
              a trickle, not a backlog); the task's function is `time.time`, so the
              task's result is the moment the worker started the function, after
              re-entering the tenant's schema. Latency = that moment - the moment
              before `tenant_async` was called.
  tenant      `apps.tenants.services.tenant_create` (schema, migrations, domain,
              first admin), median of several, each deleted again (`tenant_delete`)
  migrate     M tenants created (how long that takes is reported), then
              `manage.py migrate_schemas --noinput` with nothing to apply, with the
              default executor and with `--executor=multiprocessing`, alternating;
              the tenants are dropped at the end
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness as h

SECTION = "queue"
PREFIX = "benchq_"


def main() -> None:
    args = h.parse_args(__doc__ or "")
    tasks = 30 if args.quick else 100
    creations = 3 if args.quick else 5
    many = 10 if args.quick else 100
    migrate_rounds = 2 if args.quick else 3
    state = h.prepare(fresh=args.fresh)
    h.django_setup(state)

    from django.conf import settings
    from django.db import connection
    from django_q.models import Task

    from apps.core.tasks import tenant_async
    from apps.tenants.models import Organization
    from apps.tenants.services import tenant_create, tenant_delete

    out: list[h.Row] = []
    meta: dict[str, Any] = {"quick": args.quick, "q_cluster": settings.Q_CLUSTER}
    poll = float(settings.Q_CLUSTER.get("poll", 0.2))
    workers = settings.Q_CLUSTER.get("workers")

    def drop_bench_tenants() -> None:
        for slug in Organization.objects.filter(
            schema_name__startswith=PREFIX
        ).values_list("schema_name", flat=True):
            tenant_delete(slug=slug)

    drop_bench_tenants()

    # --- queue: enqueue -> start ---------------------------------------------------
    log_path = h.STATE_DIR / "qcluster.log"
    h.STATE_DIR.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as logfile:
        cluster = subprocess.Popen(  # noqa: S603 - our interpreter, fixed args
            [h.PYTHON, "manage.py", "qcluster"],
            cwd=h.ROOT,
            env=h.bench_env(state),
            stdout=logfile,
            stderr=logfile,
            start_new_session=True,
        )
    try:

        def started_of(ids: dict[str, float], timeout: float) -> dict[str, float]:
            """{task id: start moment} once every task has a result."""
            deadline = time.monotonic() + timeout
            while True:
                done = dict(
                    Task.objects.filter(id__in=list(ids), success=True).values_list(
                        "id", "result"
                    )
                )
                if len(done) == len(ids) or time.monotonic() > deadline:
                    return {k: float(v) for k, v in done.items()}
                if cluster.poll() is not None:
                    raise RuntimeError(f"qcluster exited; see {log_path}")
                time.sleep(0.1)

        # Warm-up: the cluster is up and its workers have imported the project.
        t0 = time.monotonic()
        warm = {tenant_async("time.time", schema_name=h.TENANT, on_commit=False): 0.0}
        assert started_of(warm, 120), f"qcluster never ran a task; see {log_path}"
        h.log(f"queue: qcluster up, first task ran after {time.monotonic() - t0:.1f} s")
        enqueued: dict[str, float] = {}
        rng = random.Random(9)  # arrival jitter
        for _ in range(tasks):
            before = time.time()
            task_id = tenant_async("time.time", schema_name=h.TENANT, on_commit=False)
            enqueued[str(task_id)] = before
            time.sleep(rng.uniform(0, 0.4))
        started = started_of(enqueued, 60 + tasks)
        assert len(started) == len(enqueued), f"{len(started)} of {len(enqueued)} ran"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(cluster.pid, signal.SIGTERM)
        try:
            cluster.wait(timeout=30)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(cluster.pid, signal.SIGKILL)
            cluster.wait(timeout=5)
    latencies = [(started[k] - enqueued[k]) * 1000 for k in enqueued]
    p50, p95 = h.percentile(latencies, 50), h.percentile(latencies, 95)
    meta["queue_ms"] = sorted(latencies)
    out.append(
        h.Row(
            id="7",
            what=f"job queue enqueue -> start, {tasks} tenant tasks",
            baseline=f"poll {poll:g} s, {workers} workers (ORM broker)",
            measured=f"p50 {p50:,.0f} / p95 {p95:,.0f} ms",
            delta=f"max {max(latencies):,.0f} ms",
            goal="p95 <= 1 s",
            passed=p95 <= 1000,
            data={"p50_ms": p50, "p95_ms": p95},
        )
    )

    # --- tenant creation -----------------------------------------------------------
    create_s: list[float] = []
    delete_s: list[float] = []
    for i in range(creations):
        slug = f"{PREFIX}c{i}"
        t0 = time.perf_counter()
        tenant_create(slug=slug, name=f"Bench {i}", admin_email=f"a@{i}.bench.test")
        create_s.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        tenant_delete(slug=slug)
        delete_s.append(time.perf_counter() - t0)
        h.log(f"tenant create {create_s[-1]:.2f} s, delete {delete_s[-1]:.2f} s")
    create = statistics.median(create_s)
    out.append(
        h.Row(
            id="7",
            what=f"tenant creation (tenant_create), median of {creations}",
            baseline=f"delete {statistics.median(delete_s):.2f} s",
            measured=f"{create:.2f} s",
            delta=f"min {min(create_s):.2f} / max {max(create_s):.2f} s",
            goal="<= 1 s",
            passed=create <= 1.0,
            data={"create_s": create_s, "delete_s": delete_s},
        )
    )

    # --- migrate_schemas over many tenants -----------------------------------------
    try:
        t0 = time.monotonic()
        for i in range(many):
            tenant_create(
                slug=f"{PREFIX}m{i:03d}", name=f"Bench {i}", admin_email="a@bench.test"
            )
            if (i + 1) % 10 == 0:
                h.log(f"migrate: {i + 1} of {many} tenants created")
        created_s = time.monotonic() - t0
        connection.close()
        schemas = Organization.objects.count()

        def migrate(*extra: str) -> dict[str, float]:
            t0 = time.monotonic()
            subprocess.run(  # noqa: S603 - our interpreter, fixed args
                [h.PYTHON, "manage.py", "migrate_schemas", "--noinput", *extra],
                cwd=h.ROOT,
                env=h.bench_env(state),
                check=True,
                stdout=subprocess.DEVNULL,
            )
            return {"s": time.monotonic() - t0}

        results = h.ab_rounds(
            {
                "standard": lambda: migrate(),
                "multiprocessing": lambda: migrate("--executor=multiprocessing"),
            },
            rounds=migrate_rounds,
            label=f"migrate_schemas {schemas} schemas",
        )
        meta["migrate"] = results
    finally:
        connection.close()
        t0 = time.monotonic()
        drop_bench_tenants()
        dropped_s = time.monotonic() - t0
    standard = results["standard"]["median"]["s"]
    multi = results["multiprocessing"]["median"]["s"]
    processes = getattr(settings, "TENANT_MULTIPROCESSING_MAX_PROCESSES", 2)
    out += [
        h.Row(
            id="7 ctx",
            what=f"creating {many} tenants one after another",
            baseline=f"dropping them {dropped_s:.1f} s",
            measured=f"{created_s:,.0f} s",
            delta=f"{created_s / many:.2f} s per tenant",
            goal="(context)",
            passed=None,
            data={"created_s": created_s, "dropped_s": dropped_s},
        ),
        h.Row(
            id="7",
            what=f"migrate_schemas, nothing to apply, {schemas} schemas",
            baseline=f"multiprocessing ({processes} proc.) {multi:.1f} s",
            measured=f"standard {standard:.1f} s",
            delta=f"{standard / schemas:.2f} / {multi / schemas:.2f} s per schema",
            goal="(reported)",
            passed=None,
            data={"standard_s": standard, "multiprocessing_s": multi},
        ),
    ]
    meta["load_avg"] = h.machine().get("load_avg")
    h.result_write(SECTION, out, meta)
    print(h.table(out))


if __name__ == "__main__":
    main()
