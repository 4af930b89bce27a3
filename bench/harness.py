"""Shared machinery of the benchmarks.

- the bench database `modelhub_bench` on the same PostgreSQL as the project (the
  embedded cluster in .pgdata unless DATABASE_URL names a server), migrated with
  `migrate_schemas` and seeded with a `bench` tenant by bench/seed.py;
- a gunicorn server under `config.settings.bench` (production settings on loopback);
- a bounded HTTP/1.1 load generator (asyncio, raw sockets, keep-alive);
- alternating A/B rounds with warm-up, medians, ratios; one table; results merged
  into bench/results/latest.json.

Every figure that is judged is a ratio or a difference against a baseline measured
in the same run, in alternating rounds; absolute numbers are printed for context.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

BENCH_DIR = ROOT / "bench"
RESULTS_DIR = BENCH_DIR / "results"
LATEST = RESULTS_DIR / "latest.json"
# Runtime state (keys of the bench database, its API key, media, server logs):
# under var/, which git ignores, and removed with the bench database.
# BENCH_DB_NAME lets two benchmark runs share a PostgreSQL server without sharing a
# database (each name keeps its own state directory).
BENCH_DB = os.environ.get("BENCH_DB_NAME", "modelhub_bench")
STATE_DIR = (
    ROOT / "var" / ("bench" if BENCH_DB == "modelhub_bench" else f"bench-{BENCH_DB}")
)
STATE_FILE = STATE_DIR / "state.json"
TENANT = "bench"
HOST = "bench.localhost"
PYTHON = sys.executable
# Rounds of every A/B comparison; at least five.
ROUNDS = 5


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --- database -------------------------------------------------------------------------


def _server_url() -> str:
    """The project's database URL: DATABASE_URL as the caller had it, or the
    embedded cluster (started if needed)."""
    url = os.environ.get("BENCH_SERVER_DATABASE_URL") or os.environ.get(
        "DATABASE_URL", ""
    )
    if not url:
        from apps.core import embedded_db

        url = embedded_db.start()
    # Remember the caller's server for child processes whose DATABASE_URL we replace.
    os.environ["BENCH_SERVER_DATABASE_URL"] = url
    return url


def database_url(name: str = BENCH_DB) -> str:
    """The same server, another database."""
    parts = urlsplit(_server_url())
    return urlunsplit(parts._replace(path=f"/{name}"))


def _maintenance_connect() -> Any:
    import psycopg

    # libpq reads `postgres://user@/db?host=/socket/dir` as it is.
    return psycopg.connect(database_url("postgres"), autocommit=True)


def database_exists() -> bool:
    with _maintenance_connect() as conn:
        row = conn.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", [BENCH_DB]
        ).fetchone()
    return row is not None


def database_drop() -> None:
    with _maintenance_connect() as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{BENCH_DB}" WITH (FORCE)')


def database_create() -> None:
    with _maintenance_connect() as conn:
        conn.execute(f'CREATE DATABASE "{BENCH_DB}"')


# --- state and environment -----------------------------------------------------------


def load_state() -> dict[str, Any] | None:
    try:
        return json.loads(STATE_FILE.read_text())
    except (OSError, ValueError):
        return None


def _save_state(state: dict[str, Any]) -> None:
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    STATE_FILE.write_text(json.dumps(state, indent=2))
    STATE_FILE.chmod(0o600)


def bench_env(state: dict[str, Any], **overrides: str) -> dict[str, str]:
    """Environment of every process touching the bench database."""
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.bench",
        "DATABASE_URL": database_url(),
        "SECRET_KEY": state["secret_key"],
        "FIELD_ENCRYPTION_KEYS": state["field_key"],
        "ALLOWED_HOSTS": "*",
        "MEDIA_ROOT": str(STATE_DIR / "media"),
        "ARCHIVE_ROOT": str(STATE_DIR / "archive"),
        # A spool of the bench database's own: a drain process copies every file of
        # its directory into its database.
        "INFERENCE_SPOOL_DIR": str(STATE_DIR / "spool"),
        "SSRF_ALLOW_LIST": "127.0.0.1/32",
        # The per-key throttle (6000/min by default) still runs on every request;
        # only its limit is raised so that the load is not answered with 429s.
        "PREDICT_THROTTLE_RATE": "100000000/min",
        "LOG_LEVEL": os.environ.get("BENCH_LOG_LEVEL", "WARNING"),
        "PYTHONUNBUFFERED": "1",
    }
    env.update(overrides)
    return env


def prepare(*, fresh: bool = False) -> dict[str, Any]:
    """The bench database, migrated and seeded; reused when it is already there
    (unless `fresh`). Returns the state (keys, API key, groups)."""
    state = load_state()
    # Under bench/run.py the database was built once for the whole run: scripts keep
    # it even if other work changes migrations meanwhile.
    reuse = os.environ.get("BENCH_REUSE_DB") == "1"
    if (
        not fresh
        and state
        and state.get("seeded")
        and (reuse or state.get("code") == code_fingerprint())
        and database_exists()
    ):
        return state
    t0 = time.monotonic()
    log(f"creating database {BENCH_DB} (fresh)")
    database_drop()
    shutil.rmtree(STATE_DIR, ignore_errors=True)
    database_create()
    from cryptography.fernet import Fernet

    state = {
        # Generated per bench database; they protect nothing but bench rows.
        "secret_key": secrets.token_urlsafe(50),
        "field_key": Fernet.generate_key().decode(),
    }
    _save_state(state)
    env = bench_env(state)
    log("migrate_schemas")
    subprocess.run(  # noqa: S603 - our own interpreter and scripts
        [PYTHON, "manage.py", "migrate_schemas", "--noinput", "-v", "0"],
        cwd=ROOT,
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    log("seeding the bench tenant (demo group, 10-version group, LLM group)")
    out = subprocess.run(  # noqa: S603 - our own interpreter and scripts
        [PYTHON, str(BENCH_DIR / "seed.py")],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    state.update(json.loads(out.stdout.strip().splitlines()[-1]))
    state["seeded"] = True
    state["code"] = code_fingerprint()
    _save_state(state)
    log(f"bench database ready in {time.monotonic() - t0:.1f} s")
    return state


def code_fingerprint() -> str:
    """Changes when anything that shapes the bench database does (migrations, the
    inference tables' DDL, the seeded content): a stale database is then rebuilt."""
    import hashlib

    digest = hashlib.sha256()
    paths = [
        *sorted(ROOT.glob("apps/*/migrations/*.py")),
        ROOT / "apps/inference/tables.py",
        ROOT / "apps/tenants/demo.py",
        BENCH_DIR / "seed.py",
    ]
    for path in paths:
        digest.update(str(path.relative_to(ROOT)).encode())
        with contextlib.suppress(OSError):
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def teardown() -> None:
    """Drop the bench database and its files."""
    database_drop()
    shutil.rmtree(STATE_DIR, ignore_errors=True)


def django_setup(state: dict[str, Any], **overrides: str) -> None:
    """Configure Django in this process against the bench database."""
    os.environ.update(bench_env(state, **overrides))
    import django

    django.setup()


# --- the server under test -----------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """gunicorn on 127.0.0.1 under config.settings.bench, with the production gunicorn
    configuration (config/gunicorn.conf.py: preloaded app, access log, worker
    recycling, Prometheus files) when it is there; the command line then sets what
    the benchmark needs: the address, `workers` x `threads` (gthread, so that the load
    generator's keep-alive connections are kept), no control socket. A context
    manager that stops only the process group it started."""

    def __init__(
        self,
        state: dict[str, Any],
        *,
        name: str,
        workers: int = 2,
        threads: int = 4,
        env: dict[str, str] | None = None,
    ) -> None:
        self.state = state
        self.name = name
        self.workers = workers
        self.threads = threads
        self.extra_env = env or {}
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = STATE_DIR / f"gunicorn-{name}.log"

    def command(self) -> list[str]:
        config = ROOT / "config" / "gunicorn.conf.py"
        return [
            PYTHON,
            "-m",
            "gunicorn",
            *(["--config", str(config)] if config.exists() else []),
            "--bind",
            f"127.0.0.1:{self.port}",
            "--workers",
            str(self.workers),
            "--threads",
            str(self.threads),
            "--worker-class",
            "gthread",
            "--keep-alive",
            "30",
            "--timeout",
            "60",
            # Several servers may run at once; none needs the control socket.
            "--no-control-socket",
            # Each worker listens on a socket of its own and the kernel spreads new
            # connections over them. On the shared socket, whichever worker woke
            # first often accepted all of a round's keep-alive connections, leaving
            # the other idle: throughput at c=8 halved at random, in any variant.
            "--reuse-port",
            "config.wsgi:application",
        ]

    def __enter__(self) -> Server:
        if self.process is None:
            self.start()
        return self.wait()

    def start(self) -> Server:
        """Launch without waiting (servers boot in parallel; `wait` or `with`)."""
        STATE_DIR.mkdir(parents=True, exist_ok=True)
        logfile = self.log_path.open("ab")
        metrics = STATE_DIR / "prometheus" / self.name
        shutil.rmtree(metrics, ignore_errors=True)
        metrics.mkdir(parents=True)
        env = {
            "PROMETHEUS_MULTIPROC_DIR": str(metrics),
            # Production recycles a worker every ~2,000 requests (GUNICORN_MAX_REQUESTS);
            # the fresh worker's first answer loads the model again (seconds), which
            # would land in whichever round it hits. Off here; bench_predict.py reports
            # that cold answer on its own row.
            "GUNICORN_MAX_REQUESTS": "0",
            **self.extra_env,
        }
        self.process = subprocess.Popen(  # noqa: S603 - our interpreter, fixed args
            self.command(),
            cwd=ROOT,
            env=bench_env(self.state, **env),
            stdout=logfile,
            stderr=logfile,
            start_new_session=True,
        )
        logfile.close()
        return self

    def wait(self) -> Server:
        """Until /healthz answers and every worker is up (60 s at most)."""
        assert self.process is not None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gunicorn {self.name} exited; see {self.log_path}")
            with contextlib.suppress(OSError):
                status, _ = http_get(self.port, "/healthz")
                if status == 200 and len(self.worker_pids()) == self.workers:
                    return self
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"gunicorn {self.name} did not answer; see {self.log_path}")

    def worker_pids(self) -> list[int]:
        """The web workers (not the spool's drain process, also the master's child)."""
        import psutil

        assert self.process is not None
        try:
            children = psutil.Process(self.process.pid).children()
        except psutil.NoSuchProcess:
            return []
        workers = []
        for child in children:
            try:
                if "drain_inference_spool" not in child.cmdline():
                    workers.append(child.pid)
            except psutil.Error:  # gone meanwhile
                continue
        return sorted(workers)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=5)

    def __exit__(self, *exc: object) -> None:
        self.stop()


# --- HTTP client ----------------------------------------------------------------------


def http_request(
    path: str,
    body: Any = None,
    *,
    host: str = HOST,
    headers: dict[str, str] | None = None,
    method: str = "POST",
) -> bytes:
    """The raw bytes of one HTTP/1.1 keep-alive request (JSON body)."""
    data = b"" if body is None else json.dumps(body).encode()
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}", "Connection: keep-alive"]
    if body is not None:
        lines += ["Content-Type: application/json", f"Content-Length: {len(data)}"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + data


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes, bool]:
    """(status, body, keep_alive) of one response."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name:
            headers[name.strip().lower()] = value.strip()
    keep = headers.get("connection", "").lower() != "close"
    if "content-length" in headers:
        body = await reader.readexactly(int(headers["content-length"]))
    elif headers.get("transfer-encoding", "").lower() == "chunked":
        parts = []
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            chunk = await reader.readexactly(size + 2)
            if size == 0:
                break
            parts.append(chunk[:-2])
        body = b"".join(parts)
    else:
        body = await reader.read()
        keep = False
    return status, body, keep


def http_get(port: int, path: str, host: str = HOST) -> tuple[int, bytes]:
    async def once() -> tuple[int, bytes]:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection("127.0.0.1", port), 2
        )
        try:
            writer.write(http_request(path, host=host, method="GET"))
            status, body, _ = await asyncio.wait_for(_read_response(reader), 5)
            return status, body
        finally:
            writer.close()

    return asyncio.run(once())


@dataclass
class LoadResult:
    latencies_ms: list[float]
    elapsed_s: float
    errors: int
    statuses: dict[int, int] = field(default_factory=dict)
    sample: bytes = b""

    @property
    def count(self) -> int:
        return len(self.latencies_ms)

    @property
    def rps(self) -> float:
        return self.count / self.elapsed_s if self.elapsed_s else 0.0

    def metrics(self) -> dict[str, float]:
        return {
            "p50_ms": percentile(self.latencies_ms, 50),
            "p99_ms": percentile(self.latencies_ms, 99),
            "rps": self.rps,
            "requests": float(self.count),
            "errors": float(self.errors),
        }


def http_load(
    port: int,
    request: bytes | Sequence[bytes],
    *,
    concurrency: int,
    requests: int,
    seconds: float,
) -> LoadResult:
    """Send `request` (or the given requests in turn) over `concurrency` keep-alive
    connections until `requests` answers or `seconds` have passed, whichever comes
    first. Only 200s are timed; anything else counts as an error."""
    pool = [request] if isinstance(request, bytes) else list(request)
    return asyncio.run(_load(port, pool, concurrency, requests, seconds))


async def _load(
    port: int, pool: list[bytes], concurrency: int, requests: int, seconds: float
) -> LoadResult:
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    errors = 0
    budget = requests
    sample = b""
    started = time.perf_counter()
    deadline = started + seconds

    async def worker() -> None:
        nonlocal budget, errors, sample
        reader = writer = None
        while budget > 0 and time.perf_counter() < deadline:
            budget -= 1
            try:
                if writer is None:
                    reader, writer = await asyncio.open_connection("127.0.0.1", port)
                assert reader is not None
                request = pool[budget % len(pool)]
                t0 = time.perf_counter()
                writer.write(request)
                status, body, keep = await asyncio.wait_for(_read_response(reader), 30)
                elapsed = (time.perf_counter() - t0) * 1000
            except (TimeoutError, OSError, asyncio.IncompleteReadError):
                errors += 1
                if writer is not None:
                    writer.close()
                reader = writer = None
                continue
            statuses[status] = statuses.get(status, 0) + 1
            if status == 200:
                latencies.append(elapsed)
            else:
                errors += 1
                sample = sample or body[:500]
            if not keep:
                writer.close()
                reader = writer = None
        if writer is not None:
            writer.close()

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return LoadResult(
        latencies, time.perf_counter() - started, errors, statuses, sample
    )


def demo_rows(count: int, offset: int = 0) -> list[dict[str, float]]:
    """Real input rows of the demo group, as apps.tenants.demo.demo_rows gives them,
    without importing Django (the load generator stays light)."""
    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer()
    names = [n.replace(" ", "_") for n in data.feature_names]
    return [
        {n: round(float(v), 6) for n, v in zip(names, row, strict=True)}
        for row in data.data[offset : offset + count]
    ]


# --- statistics and A/B rounds -------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (0 for no values)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return float(ordered[rank - 1])


def ab_rounds(
    variants: dict[str, Callable[[], dict[str, float]]],
    *,
    rounds: int = ROUNDS,
    warmup: Callable[[], Any] | None = None,
    label: str = "",
) -> dict[str, dict[str, Any]]:
    """Run every variant once per round, alternating the order (A B, B A, ...), after
    an optional warm-up. Returns {variant: {"median": {metric: value},
    "rounds": [{metric: value}, ...]}}."""
    if warmup is not None:
        warmup()
    names = list(variants)
    per: dict[str, list[dict[str, float]]] = {n: [] for n in names}
    for index in range(rounds):
        order = names if index % 2 == 0 else names[::-1]
        for name in order:
            per[name].append(variants[name]())
        if label:
            summary = ", ".join(f"{n} {_brief(per[n][-1])}" for n in names)
            log(f"{label} round {index + 1}/{rounds}: {summary}")
    return {
        name: {
            "median": {
                metric: statistics.median(r[metric] for r in results)
                for metric in results[0]
            },
            "rounds": results,
        }
        for name, results in per.items()
    }


def paired(
    results: dict[str, dict[str, Any]], a: str, b: str, metric: str, op: str = "diff"
) -> float:
    """Median over the rounds of `ab_rounds` of b - a ("diff") or b / a ("ratio") for
    one metric, each pair taken from the same round."""
    values = []
    for ra, rb in zip(results[a]["rounds"], results[b]["rounds"], strict=True):
        x, y = ra[metric], rb[metric]
        values.append(y - x if op == "diff" else (y / x if x else 0.0))
    return statistics.median(values)


def _brief(metrics: dict[str, float]) -> str:
    names = ("p50_ms", "p99_ms", "rps", "rows_per_s", "us", "ms", "s")
    keys = [k for k in names if k in metrics]
    return " ".join(f"{k}={metrics[k]:.4g}" for k in keys)


# --- results -------------------------------------------------------------------------


@dataclass
class Row:
    """One line of the table: a measurement against its baseline and its goal."""

    id: str
    what: str
    baseline: str
    measured: str
    delta: str  # ratio or added cost, as judged by the goal
    goal: str
    passed: bool | None  # None: reported, not judged
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def verdict(self) -> str:
        if self.data.get("skipped"):
            return "skip"
        return {True: "pass", False: "MISS", None: "info"}[self.passed]


def results_read() -> dict[str, Any]:
    try:
        return json.loads(LATEST.read_text())
    except (OSError, ValueError):
        return {}


def results_reset(**fields: Any) -> None:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    LATEST.write_text(json.dumps({**fields, "sections": {}}, indent=2) + "\n")


def results_update(**fields: Any) -> None:
    doc = results_read()
    doc.update(fields)
    LATEST.write_text(json.dumps(doc, indent=2, default=str) + "\n")


def result_write(section: str, rows: list[Row], meta: dict[str, Any]) -> None:
    """Merge one script's rows into bench/results/latest.json (by section)."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    doc = results_read()
    doc.setdefault("sections", {})[section] = {
        "meta": meta,
        "rows": [asdict(r) for r in rows],
        "written_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    doc["machine"] = machine()
    LATEST.write_text(json.dumps(doc, indent=2, default=str) + "\n")


def rows_from_results(order: Sequence[str] | None = None) -> list[Row]:
    sections = results_read().get("sections", {})
    names = [n for n in (order or sections) if n in sections]
    return [Row(**r) for n in names for r in sections[n]["rows"]]


def machine() -> dict[str, Any]:
    import platform

    info: dict[str, Any] = {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }
    with contextlib.suppress(Exception):
        import psutil

        info["memory_gb"] = round(psutil.virtual_memory().total / 2**30, 1)
        info["load_avg"] = [round(x, 2) for x in os.getloadavg()]
    return info


def table(rows: Sequence[Row]) -> str:
    """The one table: #, what, baseline, measured, ratio/added, goal, pass/miss."""
    header = ("#", "what", "baseline", "measured", "ratio/added", "goal", "pass/miss")
    cells = [header] + [
        (r.id, r.what, r.baseline, r.measured, r.delta, r.goal, r.verdict) for r in rows
    ]
    widths = [max(len(str(c[i])) for c in cells) for i in range(len(header))]

    def line(c: Sequence[str]) -> str:
        return (
            "| "
            + " | ".join(str(v).ljust(w) for v, w in zip(c, widths, strict=True))
            + " |"
        )

    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(header), rule, *(line(c) for c in cells[1:])])


def fmt_ms(value: float) -> str:
    return f"{value:.2f} ms"


def fmt_rps(value: float) -> str:
    return f"{value:,.0f}/s"


@contextlib.contextmanager
def timed(label: str) -> Iterator[None]:
    t0 = time.monotonic()
    yield
    log(f"{label}: {time.monotonic() - t0:.1f} s")


def parse_args(description: str) -> Any:
    import argparse

    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "--quick", action="store_true", help="short version (make bench-quick)"
    )
    parser.add_argument(
        "--fresh", action="store_true", help="recreate the bench database first"
    )
    return parser.parse_args()
