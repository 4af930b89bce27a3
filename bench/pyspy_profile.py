"""Profile the request path of one gunicorn worker under load with py-spy.

    .venv/bin/pip install py-spy        # a profiling tool, not a project dependency
    .venv/bin/python bench/pyspy_profile.py predict|bare|openai [--seconds 12]

One worker with one thread (so that one sample is one request's moment), loaded by one
connection at a time; py-spy samples it (--idle: time spent waiting for PostgreSQL
or the provider counts, since that is where a request's latency goes). Prints the
share of request time inside the frames that matter (inclusive, so they overlap) and
keeps the raw stacks in var/bench/profile-<target>.txt (speedscope/flamegraph input:
`py-spy record -f raw` collapsed stacks).
"""

from __future__ import annotations

import argparse
import collections
import re
import shutil
import subprocess
import sys
import threading
import time
from http.server import ThreadingHTTPServer
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness as h

# (label, regular expression on "function (file)") — inclusive time of each.
FRAMES = [
    ("whole request (Django handler)", r"^WSGIHandler\.__call__ "),
    ("waiting for PostgreSQL (psycopg wait)", r"^Connection\.wait \(psycopg/"),
    (
        "SET search_path (django-tenants, per cursor)",
        r"^DatabaseWrapper\._handle_search_path ",
    ),
    ("BEGIN sent by psycopg (atomic blocks)", r"^BaseConnection\._start_query "),
    (
        "connection health check (CONN_HEALTH_CHECKS)",
        r"^BaseDatabaseWrapper\.close_if_health_check_failed ",
    ),
    (
        "tenant lookup by host (TenantMainMiddleware)",
        r"^TenantMainMiddleware\.process_request ",
    ),
    ("API key authentication", r"^ApiKeyAuthentication\.authenticate "),
    ("throttle", r"^APIView\.check_throttles "),
    ("DRF request serializer (is_valid)", r"^BaseSerializer\.is_valid "),
    ("group_route (group row query, cached route)", r"^group_route "),
    ("routing: table() + choose()", r"^(GroupRoute\.table|choose) "),
    ("input validation (validate_rows)", r"^validate_rows "),
    ("model: invoke_local (matrix + predict + proba)", r"^invoke_local "),
    ("provider call: call_provider", r"^call_provider "),
    ("  openai client + httpx transport built per call", r"^OpenAIConnector\._client "),
    ("  of which: TLS context (CA bundle load)", r"^create_ssl_context "),
    (
        "  provider bookkeeping queries (quota/breaker/usage)",
        r"^(quota_check|breaker_check|record_usage|_breaker_record) ",
    ),
    ("log_write (INSERT, own transaction)", r"^log_write "),
    ("response rendering (DRF JSONRenderer)", r"^Response\.rendered_content "),
    ("gunicorn writing the response", r"^Response\.(write|send_headers) \(gunicorn/"),
]


def summarise(path: Path) -> list[tuple[str, float]]:
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or "handle_request" not in stack:
            continue  # gunicorn's idle loops, not a request
        n = int(count)
        total += n
        frames = [
            re.sub(r" \((.*?)(:\d+)?\)$", r" (\1)", f).replace(
                str(h.ROOT / ".venv/lib/python3.11/site-packages") + "/", ""
            )
            for f in stack.split(";")
        ]
        for label, pattern in FRAMES:
            if any(re.search(pattern, f) for f in frames):
                inclusive[label] += n
    return [(label, 100 * inclusive[label] / max(total, 1)) for label, _ in FRAMES]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("target", choices=["predict", "bare", "openai"])
    parser.add_argument("--seconds", type=float, default=12)
    args = parser.parse_args()
    py_spy = shutil.which("py-spy", path=str(Path(h.PYTHON).parent)) or shutil.which(
        "py-spy"
    )
    if not py_spy:
        sys.exit("py-spy is not installed: .venv/bin/pip install py-spy")
    state = h.prepare()
    auth = {"Authorization": f"Api-Key {state['api_key']}"}
    rows = h.demo_rows(50)
    fake = None
    if args.target == "openai":
        import bench_openai_door as door

        fake = ThreadingHTTPServer(("127.0.0.1", 0), door.FakeOpenAI)
        fake.daemon_threads = True
        threading.Thread(target=fake.serve_forever, daemon=True).start()
        h.django_setup(state)
        from django_tenants.utils import schema_context

        from apps.providers.models import ProviderConfig
        from apps.providers.services import provider_update

        with schema_context(h.TENANT):
            provider_update(
                provider=ProviderConfig.objects.get(pk=state["provider_id"]),
                actor="bench",
                base_url=f"http://127.0.0.1:{fake.server_address[1]}/v1",
            )
        messages = [{"role": "user", "content": "hi"}]
        reqs = [
            h.http_request(
                "/openai/v1/chat/completions",
                {"model": state["llm_group"], "messages": messages},
                headers={"Authorization": f"Bearer {state['api_key']}"},
            )
        ]
    elif args.target == "predict":
        reqs = [
            h.http_request(
                f"/api/v1/groups/{state['group']}/predict/",
                {"inputs": r, "routing_key": state["routing_key"]},
                headers=auth,
            )
            for r in rows
        ]
    else:
        reqs = [
            h.http_request(
                f"/bench/bare-predict/?version={state['version_id']}", {"inputs": r}
            )
            for r in rows
        ]
    out = h.STATE_DIR / f"profile-{args.target}.txt"
    with h.Server(state, name=f"profile-{args.target}", workers=1, threads=1) as srv:
        warm = h.http_load(srv.port, reqs, concurrency=1, requests=200, seconds=60)
        if warm.errors:
            sys.exit(f"warm-up failed: {warm.statuses} {warm.sample!r}")
        spy = subprocess.Popen(  # noqa: S603 - py-spy from the venv, fixed args
            [
                py_spy,
                "record",
                "--pid",
                str(srv.worker_pids()[0]),
                "--duration",
                str(int(args.seconds) + 1),
                "--rate",
                "500",
                "--format",
                "raw",
                "--output",
                str(out),
                "--idle",
                "--nonblocking",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(0.5)
        load = h.http_load(
            srv.port, reqs, concurrency=1, requests=10**6, seconds=args.seconds
        )
        spy.wait(timeout=args.seconds + 30)
    if fake is not None:
        fake.shutdown()
    m = load.metrics()
    print(
        f"{args.target}: {load.count} requests, p50 {m['p50_ms']:.2f} ms, "
        f"p99 {m['p99_ms']:.2f} ms (1 worker, 1 thread, c=1, under py-spy)"
    )
    for label, share in summarise(out):
        if share:
            print(f"  {share:5.1f} %  {label}")
    print(f"raw stacks: {out.relative_to(h.ROOT)}")


if __name__ == "__main__":
    main()
