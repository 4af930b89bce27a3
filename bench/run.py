"""`make bench` / `make bench-quick`: every benchmark that has code to
measure, one table, bench/results/latest.json.

Creates the bench database `modelhub_bench` (fresh) on the project's PostgreSQL
(starting the embedded cluster when DATABASE_URL is unset), runs each script in its
own process, prints one table and drops the database again (--keep-db keeps it).
Exit status 1 when a script failed; missed goals are reported, not errors.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness as h

# Run order (cheap first, the long memory run, then the runs that write the most:
# tenants for the queue, millions of log rows for the comparison) and table order
# (by item) differ.
SCRIPTS = [
    ("routing", "bench_routing.py"),
    ("shap", "bench_shap.py"),
    ("ingest", "bench_ingest.py"),
    ("predict", "bench_predict.py"),
    ("openai_door", "bench_openai_door.py"),
    ("memory", "bench_memory.py"),
    ("queue", "bench_queue.py"),
    ("comparison", "bench_comparison.py"),
]
TABLE_ORDER = [
    "predict",
    "ingest",
    "comparison",
    "shap",
    "routing",
    "queue",
    "memory",
    "openai_door",
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="the short version")
    parser.add_argument(
        "--keep-db", action="store_true", help="keep modelhub_bench afterwards"
    )
    parser.add_argument(
        "--only",
        default="",
        help="comma-separated subset: " + ", ".join(n for n, _ in SCRIPTS),
    )
    args = parser.parse_args()
    only = {n.strip() for n in args.only.split(",") if n.strip()}
    mode = "quick" if args.quick else "full"
    started = time.monotonic()
    h.log(f"ModelHub benchmarks, {mode} run")
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    if only:  # a partial run replaces its own sections and keeps the others
        h.results_update(mode=mode, started_at=stamp)
    else:
        h.results_reset(mode=mode, started_at=stamp)
    failed: list[str] = []
    try:
        h.prepare(fresh=True)
        os.environ["BENCH_REUSE_DB"] = "1"
        for name, script in SCRIPTS:
            if only and name not in only:
                continue
            t0 = time.monotonic()
            h.log(f"--- {name}")
            command = [h.PYTHON, str(h.BENCH_DIR / script)] + (
                ["--quick"] if args.quick else []
            )
            # Each script prints its own table on stdout; here only the combined one.
            done = subprocess.run(command, cwd=h.ROOT, stdout=subprocess.DEVNULL)  # noqa: S603
            h.log(f"--- {name}: {time.monotonic() - t0:.0f} s")
            if done.returncode != 0:
                failed.append(name)
    finally:
        if not args.keep_db:
            h.teardown()
    elapsed = time.monotonic() - started
    rows = h.rows_from_results(TABLE_ORDER)
    table = h.table(rows)
    h.results_update(
        finished_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        elapsed_s=round(elapsed, 1),
        failed=failed,
        table=table,
    )
    print()
    print(
        f"ModelHub benchmarks ({mode} run, {elapsed:.0f} s, {h.machine()['cpus']} CPUs)"
    )
    print(table)
    print(f"\nResults: {h.LATEST.relative_to(h.ROOT)}")
    if failed:
        print(f"FAILED: {', '.join(failed)} (see the output above)")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
