"""gunicorn settings for production: `gunicorn -c config/gunicorn.conf.py`.

Every value can be overridden from the environment (names below) or the command line.
See docs/operations.md for the whole production setup.
"""

from __future__ import annotations

import gc
import multiprocessing
import os
import shutil
import time
from pathlib import Path
from typing import Any

BASE_DIR = Path(__file__).resolve().parent.parent

wsgi_app = "config.wsgi:application"
bind = os.environ.get("GUNICORN_BIND", "0.0.0.0:8000")
# Sync workers: predictions are CPU-bound model calls plus one INSERT. 2 x CPUs + 1 is
# gunicorn's rule of thumb; WEB_CONCURRENCY overrides it (as on most PaaS).
workers = int(os.environ.get("WEB_CONCURRENCY", multiprocessing.cpu_count() * 2 + 1))
worker_class = "sync"
threads = int(os.environ.get("GUNICORN_THREADS", "1"))
# Django, DRF, numpy, scikit-learn and the routes are imported once in the master and
# shared copy-on-write; each worker then opens its own database connection.
preload_app = True
# A request longer than this is killed (provider calls have their own, lower timeouts).
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "60"))
# SIGTERM / SIGHUP: workers finish in-flight requests for up to this long.
graceful_timeout = int(os.environ.get("GUNICORN_GRACEFUL_TIMEOUT", "30"))
keepalive = int(os.environ.get("GUNICORN_KEEPALIVE", "5"))
# Recycle workers now and then so that a slow leak never becomes an outage.
max_requests = int(os.environ.get("GUNICORN_MAX_REQUESTS", "2000"))
max_requests_jitter = int(os.environ.get("GUNICORN_MAX_REQUESTS_JITTER", "200"))
# The prediction body limit is enforced by the app; these bound the header block.
limit_request_line = 8190
limit_request_fields = 100

accesslog = os.environ.get("GUNICORN_ACCESS_LOG", "-")
errorlog = "-"
loglevel = os.environ.get("GUNICORN_LOG_LEVEL", "info")
# One line per request with its request id (the X-Request-ID response header) and the
# duration in microseconds, so that access lines join the app's JSON logs.
access_log_format = (
    '%(h)s "%(r)s" %(s)s %(b)s %(D)sus host=%({host}i)s '
    'request_id=%({x-request-id}o)s ua="%(a)s"'
)
# gunicornc's control socket: off unless a path is given, since its default path is
# per user and two gunicorns of one user (two web nodes on one host) would share it.
control_socket = os.environ.get("GUNICORN_CONTROL_SOCKET", "")
control_socket_disable = not control_socket

# Behind a proxy that sets X-Forwarded-For/-Proto: list its address here.
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")

# Prometheus multiprocess mode: every worker writes its counters to files in this
# directory; /metrics sums them. It must be set before the app (and
# prometheus_client) is imported, i.e. here, since preload_app imports it in the
# master. When the caller did not choose a directory, we own one and clear it.
_OWN_METRICS_DIR = "PROMETHEUS_MULTIPROC_DIR" not in os.environ
os.environ.setdefault(
    "PROMETHEUS_MULTIPROC_DIR", str(BASE_DIR / "var" / "prometheus" / "web")
)
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.production")
# preload_app imports the app before on_starting runs: the directory must exist now.
Path(os.environ["PROMETHEUS_MULTIPROC_DIR"]).mkdir(parents=True, exist_ok=True)


def on_starting(server: Any) -> None:
    """Once, before the first fork (not on SIGHUP reloads): clear the directory we own,
    since stale files of a previous run would be summed into the counters. Our
    metrics all have labels, so importing the app created no file in it yet."""
    path = Path(os.environ["PROMETHEUS_MULTIPROC_DIR"])
    if _OWN_METRICS_DIR:
        shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True, exist_ok=True)


# Seconds the master may spend loading the active groups' models before the first
# fork (0: none); see when_ready.
warm_seconds = float(os.environ.get("GUNICORN_WARM_SECONDS", "30"))


def when_ready(server: Any) -> None:
    """Once, in the master before the first fork: in the spool log mode, start the
    spool's drain process (apps/inference/drain_process.py); load every active group's
    local models (and routes), so that each worker, a recycled one too, starts with them
    instead of making its first callers wait for the load. The sockets are bound by
    then, so connections queue until the first fork: at most GUNICORN_WARM_SECONDS
    (2.8-3.1 s for the bench's 12 models). A failure (the database not up yet) does
    not stop the start; the first requests load the models instead."""
    from apps.inference.drain_process import drain_process, wanted

    if wanted():
        drain_process.start(server.log)
    if warm_seconds <= 0:
        return
    try:
        from apps.groups.serving import warm_active_groups

        started = time.monotonic()
        loaded = warm_active_groups(warm_seconds)
        server.log.info(
            "loaded %d models of active groups in %.1f s",
            loaded,
            time.monotonic() - started,
        )
    except Exception as exc:  # whatever it is, the workers load on demand instead
        server.log.warning("models not loaded before the first fork: %s", exc)


def pre_fork(server: Any, worker: Any) -> None:
    """In the master, just before each fork: move every object it holds (Django, the
    libraries, the models loaded above: some 400k) to the collector's permanent
    generation (gc.freeze). A worker's collections then never walk them, so they never
    write to those objects' pages, which stay shared with the master instead of being
    copied into every worker: a busy worker's private memory 39-41 MiB instead of
    91-102 MiB (docs/performance.md, "Worker memory")."""
    gc.freeze()


def post_worker_init(worker: Any) -> None:
    """In each worker, once it is up, in the spool log mode: with the server's drain
    process (INFERENCE_SPOOL_HOST_DRAIN), only append; otherwise start the worker's
    own drain now rather than at the first prediction, so that the files of processes
    that are gone (a crash, a kill -9, a restart of the host) are replayed within
    INFERENCE_SPOOL_ADOPT_SECONDS even while no prediction comes in."""
    from django.conf import settings

    if settings.INFERENCE_LOG_MODE == "spool":
        from apps.inference.drain_process import wanted
        from apps.inference.spool import process_spool

        process_spool().start(relay=wanted())


def on_exit(server: Any) -> None:
    """The master stops (after its workers): so does the spool's drain process,
    which copies what the workers appended up to their exit first."""
    from apps.inference.drain_process import drain_process

    drain_process.stop()


def child_exit(server: Any, worker: Any) -> None:
    """A worker died or was recycled: its live gauges no longer count (its counters
    stay summed, as Prometheus expects of a counter)."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)
