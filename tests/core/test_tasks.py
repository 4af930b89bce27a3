"""Background work runs in the schema it was enqueued from, and nowhere else."""

from __future__ import annotations

import os
import signal
import time

import pytest
from django.db import connection
from django_q.models import OrmQ, Success
from django_q.tasks import result
from django_tenants.utils import schema_context

from apps.core.tasks import TenantContextError, echo_schema, run_in_tenant, tenant_async
from tests.servers import qcluster_start


def test_enqueue_from_public_is_refused(db):
    connection.set_schema_to_public()
    with pytest.raises(TenantContextError, match="without a tenant"):
        tenant_async(echo_schema, on_commit=False)
    assert OrmQ.objects.count() == 0


@pytest.mark.parametrize("schema", [None, "", "public"])
def test_worker_side_refuses_a_task_without_a_tenant(db, schema):
    with pytest.raises(TenantContextError, match="has no tenant schema; not run"):
        run_in_tenant(schema, "apps.core.tasks.echo_schema")


def test_worker_side_enters_the_given_schema(tenant_a, tenant_b):
    out_a = run_in_tenant("alpha", "apps.core.tasks.echo_schema", "m")
    out_b = run_in_tenant("beta", "apps.core.tasks.echo_schema")

    assert out_a == {"schema": "alpha", "search_path": "alpha, public", "marker": "m"}
    assert out_b["schema"] == "beta"


def test_enqueue_captures_schema_and_waits_for_commit(
    tenant_a, django_capture_on_commit_callbacks
):
    with schema_context("alpha"), django_capture_on_commit_callbacks() as callbacks:
        assert tenant_async(echo_schema, "x") is None
        assert OrmQ.objects.count() == 0
    assert len(callbacks) == 1
    callbacks[0]()
    queued = OrmQ.objects.get()
    assert queued.task["args"][:3] == ("alpha", "apps.core.tasks.echo_schema", "x")
    assert queued.task["func"] == "apps.core.tasks.run_in_tenant"


@pytest.fixture
def worker(django_db_setup, django_db_blocker):
    """A real `qcluster` process on the test database."""
    db = connection.settings_dict
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.test",
        "DATABASE_URL": f"postgres://{db['USER']}@/{db['NAME']}?host={db['HOST']}",
        "Q_WORKERS": "1",
    }
    proc = qcluster_start(env)
    yield proc
    # The tasks are done: a graceful stop would only wait for the cluster's timers.
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=15)
    with django_db_blocker.unblock():
        Success.objects.filter(name__startswith=("alpha:")).delete()
        Success.objects.filter(name__startswith=("beta:")).delete()


@pytest.mark.worker
def test_real_worker_runs_each_task_in_its_tenants_schema(worker, django_db_blocker):
    with django_db_blocker.unblock():
        with schema_context("alpha"):
            id_a = tenant_async(echo_schema, "a", on_commit=False)
        with schema_context("beta"):
            id_b = tenant_async(echo_schema, "b", on_commit=False)
        deadline = time.monotonic() + 60
        out_a = out_b = None
        while time.monotonic() < deadline and (out_a is None or out_b is None):
            out_a = out_a or result(id_a)
            out_b = out_b or result(id_b)
            time.sleep(0.2)
    assert out_a == {"schema": "alpha", "search_path": "alpha, public", "marker": "a"}
    assert out_b == {"schema": "beta", "search_path": "beta, public", "marker": "b"}
