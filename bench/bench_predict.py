"""Benchmark items 1 and 2: the predict endpoint against a bare Django view, and
logging's cost, at concurrency 1 and 8.

Four gunicorn servers (config.settings.bench, 2 workers x 4 threads each) run side
by side on loopback: `log` is production as shipped (the direct log mode), `spool` the
same with INFERENCE_LOG_MODE=spool (and its drain process), `spool-thread` the same
with the drain in each worker (INFERENCE_SPOOL_HOST_DRAIN=false), `nolog` the same
with INFERENCE_LOGGING=false. Rounds alternate between
  bare     POST /bench/bare-predict/ on `log`: the same model, nothing around it
  predict  POST /api/v1/groups/breast-cancer/predict/ on `log`
  spool    the same request on `spool`
  spool_thread  the same request on `spool-thread` (context rows)
  nolog    the same request on `nolog`
The predict variants carry a routing key that the sticky group sends to its champion,
and the bare view loads that champion's version: all of them run the same model on the
same rows. Differences and ratios are paired per round, then the median is taken.
Items 1 and 2 are reported for both log modes.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness as h

SECTION = "predict"


def goal(text: str, judged: bool) -> str:
    return text if judged else f"(context) {text}"


def statements(state: dict[str, Any], row: dict[str, float]) -> dict[str, list[str]]:
    """The round trips each variant makes per request, counted in-process with
    Django's test client (gunicorn adds one `SELECT 1` health check per request to
    both): Django's queries, plus what the hot path sends on the raw psycopg
    connection (a statement, or a transaction sent as one query string)."""
    import json

    import psycopg

    h.django_setup(state)
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    from apps.core import db

    raw_calls: list[str] = []
    plain_execute, plain_commit = psycopg.Connection.execute, db._commit

    def execute(self, query, *args, **kwargs):  # type: ignore[no-untyped-def]
        text = query.as_string(self) if hasattr(query, "as_string") else str(query)
        raw_calls.append("raw: " + text)
        return plain_execute(self, query, *args, **kwargs)

    def commit(statements):  # type: ignore[no-untyped-def]
        raw_calls.append(f"raw commit of {len(statements)} (one round trip)")
        return plain_commit(statements)

    client = Client(HTTP_HOST=h.HOST)
    calls = {
        "bare": (f"/bench/bare-predict/?version={state['version_id']}", {}, {}),
        "predict": (
            f"/api/v1/groups/{state['group']}/predict/",
            {"routing_key": state["routing_key"]},
            {"HTTP_AUTHORIZATION": f"Api-Key {state['api_key']}"},
        ),
    }
    out: dict[str, list[str]] = {}
    for name, (path, extra, headers) in calls.items():
        body = json.dumps({"inputs": row, **extra})
        # Caches warm, as under load; the fewest of five calls, since a call that
        # finds a one-second trust expired (the servers booting beside it slow the
        # machine) re-reads the route, which is not the steady state.
        for _ in range(5):
            raw_calls.clear()
            psycopg.Connection.execute = execute  # type: ignore[method-assign]
            db._commit = commit
            try:
                with CaptureQueriesContext(connection) as captured:
                    response = client.post(
                        path, body, content_type="application/json", **headers
                    )
            finally:
                psycopg.Connection.execute = plain_execute  # type: ignore[method-assign]
                db._commit = plain_commit
            assert response.status_code == 200, response.content[:300]
            seen = [
                " ".join(q["sql"].split())[:90] for q in captured.captured_queries
            ] + [" ".join(c.split())[:90] for c in raw_calls]
            if name not in out or len(seen) < len(out[name]):
                out[name] = seen
    connection.close()
    return out


def main() -> None:
    args = h.parse_args(__doc__ or "")
    state = h.prepare(fresh=args.fresh)
    quick = args.quick
    # (requests, seconds) per variant and round, whichever ends first
    per_round = (
        {1: (300, 0.5), 8: (800, 0.5)} if quick else {1: (1500, 2), 8: (3000, 2)}
    )
    # This machine is shared: more, shorter rounds make the paired medians steadier.
    rounds = h.ROUNDS if quick else 7
    warm = 100 if quick else 600

    rows = h.demo_rows(50)
    auth = {"Authorization": f"Api-Key {state['api_key']}"}
    predict_path = f"/api/v1/groups/{state['group']}/predict/"
    predict_reqs = [
        h.http_request(
            predict_path,
            {"inputs": r, "routing_key": state["routing_key"]},
            headers=auth,
        )
        for r in rows
    ]
    bare_reqs = [
        h.http_request(
            f"/bench/bare-predict/?version={state['version_id']}", {"inputs": r}
        )
        for r in rows
    ]

    log_srv = h.Server(state, name="log").start()
    nolog_srv = h.Server(state, name="nolog", env={"INFERENCE_LOGGING": "false"})
    nolog_srv.start()
    spool_srv = h.Server(state, name="spool", env={"INFERENCE_LOG_MODE": "spool"})
    spool_srv.start()
    thread_srv = h.Server(
        state,
        name="spool-thread",
        env={
            "INFERENCE_LOG_MODE": "spool",
            "INFERENCE_SPOOL_HOST_DRAIN": "false",
            "INFERENCE_SPOOL_DIR": str(h.STATE_DIR / "spool-thread"),
        },
    )
    thread_srv.start()
    try:
        sql = statements(state, rows[0])  # while the servers boot
    except BaseException:
        for srv in (log_srv, nolog_srv, spool_srv, thread_srv):
            srv.stop()
        raise
    out: list[h.Row] = [
        h.Row(
            id="1 ctx",
            what="round trips to PostgreSQL per request",
            baseline=f"bare view {len(sql['bare'])}",
            measured=f"predict {len(sql['predict'])}",
            delta=f"+{len(sql['predict']) - len(sql['bare'])} round trips",
            goal="(context)",
            passed=None,
            data=sql,
        )
    ]
    meta: dict[str, Any] = {"quick": quick, "per_round": per_round, "rounds": rounds}
    with log_srv, nolog_srv, spool_srv, thread_srv:
        meta["server"] = (
            f"gunicorn gthread, {log_srv.workers} workers x {log_srv.threads} threads"
        )
        # The first answer of a fresh worker: it opens its database connection and
        # loads the model (what every recycled worker's first caller waits for).
        cold = h.http_load(
            log_srv.port, predict_reqs[0], concurrency=1, requests=1, seconds=60
        )
        if cold.errors:
            raise RuntimeError(f"first request failed: {cold.statuses} {cold.sample!r}")
        cold_ms = cold.latencies_ms[0]

        def warmup() -> None:
            # Every worker loads the model and opens its database connection.
            for srv, reqs in (
                (log_srv, bare_reqs),
                (log_srv, predict_reqs),
                (nolog_srv, predict_reqs),
                (spool_srv, predict_reqs),
                (thread_srv, predict_reqs),
            ):
                result = h.http_load(
                    srv.port, reqs, concurrency=8, requests=warm, seconds=60
                )
                if result.errors:
                    raise RuntimeError(
                        f"warm-up failed: {result.statuses} {result.sample[:300]!r}"
                    )

        for concurrency in (1, 8):
            count, seconds = per_round[concurrency]

            def run(
                srv: h.Server,
                reqs: list[bytes],
                c: int = concurrency,
                n: int = count,
                s: float = seconds,
            ) -> dict[str, float]:
                result = h.http_load(
                    srv.port, reqs, concurrency=c, requests=n, seconds=s
                )
                if result.errors:
                    raise RuntimeError(
                        f"errors: {result.statuses} {result.sample[:300]!r}"
                    )
                return result.metrics()

            results = h.ab_rounds(
                {
                    "bare": lambda: run(log_srv, bare_reqs),
                    "predict": lambda: run(log_srv, predict_reqs),
                    "nolog": lambda: run(nolog_srv, predict_reqs),
                    "spool": lambda: run(spool_srv, predict_reqs),
                    "spool_thread": lambda: run(thread_srv, predict_reqs),
                },
                rounds=rounds,
                warmup=warmup if concurrency == 1 else None,
                label=f"predict c={concurrency}",
            )
            meta[f"c{concurrency}"] = results
            if concurrency == 1:
                steady = results["predict"]["median"]["p50_ms"]
                out.append(
                    h.Row(
                        id="1 ctx",
                        what="first answer of a fresh worker",
                        baseline=f"steady p50 {steady:.2f} ms",
                        measured=f"{cold_ms:,.0f} ms",
                        delta=f"+{cold_ms - steady:,.0f} ms",
                        goal="(context: loads the model)",
                        passed=None,
                        data={"cold_ms": cold_ms},
                    )
                )
            bare, nolog = results["bare"]["median"], results["nolog"]["median"]
            for variant, mode, logging in (
                ("predict", "", "direct"),
                ("spool", " spool", "spooled"),
                ("spool_thread", " ctx", "spooled, drain in the workers"),
            ):
                judged = variant != "spool_thread"
                pred = results[variant]["median"]
                add50 = h.paired(results, "bare", variant, "p50_ms", "diff")
                add99 = h.paired(results, "bare", variant, "p99_ms", "diff")
                share = h.paired(results, "bare", variant, "rps", "ratio")
                out.append(
                    h.Row(
                        id=f"1 c={concurrency}{mode}",
                        what=f"predict latency, c={concurrency}, log {logging}",
                        baseline=f"bare view p50 {bare['p50_ms']:.2f} / p99 {bare['p99_ms']:.2f} ms",
                        measured=f"p50 {pred['p50_ms']:.2f} / p99 {pred['p99_ms']:.2f} ms",
                        delta=f"+{add50:.2f} / +{add99:.2f} ms",
                        goal=goal("added p50 <= 0.5 ms, p99 <= 2 ms", judged),
                        passed=add50 <= 0.5 and add99 <= 2.0 if judged else None,
                        data={"added_p50_ms": add50, "added_p99_ms": add99},
                    )
                )
                out.append(
                    h.Row(
                        id=f"1 c={concurrency}{mode}",
                        what=f"predict throughput, c={concurrency}, log {logging}",
                        baseline=f"bare view {h.fmt_rps(bare['rps'])}",
                        measured=h.fmt_rps(pred["rps"]),
                        delta=f"{share:.0%} of bare",
                        goal=goal(">= 70 % of bare", judged),
                        passed=share >= 0.70 if judged else None,
                        data={"throughput_ratio": share},
                    )
                )
                loss = 1 - h.paired(results, "nolog", variant, "rps", "ratio")
                log99 = h.paired(results, "nolog", variant, "p99_ms", "diff")
                out.append(
                    h.Row(
                        id=f"2 c={concurrency}{mode}",
                        what=f"logging cost, c={concurrency}, log {logging}",
                        baseline=(
                            f"logging off {h.fmt_rps(nolog['rps'])}, p99 {nolog['p99_ms']:.2f} ms"
                        ),
                        measured=f"{h.fmt_rps(pred['rps'])}, p99 {pred['p99_ms']:.2f} ms",
                        delta=f"{-loss:+.1%} rps, {log99:+.2f} ms p99",
                        goal=goal("<= 10 % throughput, <= +1 ms p99", judged),
                        passed=loss <= 0.10 and log99 <= 1.0 if judged else None,
                        data={"throughput_loss": loss, "added_p99_ms": log99},
                    )
                )
    h.result_write(SECTION, out, meta)
    print(h.table(out))


if __name__ == "__main__":
    main()
