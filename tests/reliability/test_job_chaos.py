"""Job chaos: training jobs through a real worker cluster that is SIGKILLed 20 times at
random points, and a job whose task always kills its own worker.

A kill takes down the whole `qcluster` process group (sentinel, pusher, monitor and
the task-running children) at once: what a machine crash or an OOM-killed container
does. Nothing of the worker says goodbye; only the job's lease, the reaper and the
attempt fencing are left to recover. The poison job kills only the task-running child,
the way a segfaulting native library would; the cluster respawns it.

The timescales are shortened so that the test takes a few minutes: a lease of
`LEASE` seconds per job, a stale-queued delay of `STALE` seconds (a task that a killed
cluster had prefetched is enqueued again) and the reaper run by the test between its
polls (up to 5 times a second) instead of the worker's minute schedule. The kill
points (a random percentage of a training's progress, or just after it finished) and
the jobs' sizes come from a seeded generator; the seed is printed (`CHAOS_SEED=<n>`
replays the same choices).
"""

from __future__ import annotations

import os
import random
import shutil
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.db.models import Count
from django_tenants.utils import schema_context

from apps.jobs import services
from apps.jobs.datasets import dataset_create
from apps.jobs.models import Job
from apps.registry.models import ModelVersion
from apps.tenants.services import tenant_create, tenant_delete
from tests.jobs.conftest import (
    assert_test_database,
    breast_cancer_csv,
    kill_worker,
    queue_cleanup,
    start_worker,
    upload,
)
from tests.reliability.chaos_worker import POISON_PREFIX

pytestmark = [pytest.mark.slow, pytest.mark.worker]

LEASE = 8
STALE = 15
ROUNDS = 20
ACTIVE = 4  # jobs queued or running at the start of each round
# Each chaos job may be hit by several kills; the three-attempt budget of the default
# is proven by the poison job below.
CHAOS_ATTEMPTS = 6
WORKER_ENV = {"DJANGO_SETTINGS_MODULE": "tests.reliability.chaos_worker"}


class Tenant:
    """A throwaway organisation with a breast-cancer dataset; deleted on exit."""

    def __init__(self, prefix: str) -> None:
        self.slug = f"{prefix}{uuid.uuid4().hex[:8]}"

    def __enter__(self) -> Tenant:
        assert_test_database()
        tenant_create(
            slug=self.slug,
            name=self.slug,
            admin_email=f"a@{self.slug}.test",
            domains=[f"{self.slug}.test"],
        )
        with schema_context(self.slug):
            self.dataset = dataset_create(
                file=upload(breast_cancer_csv()), name="cancer", actor="test"
            )
        return self

    def job(
        self, name: str, *, estimators: int, max_attempts: int | None = None
    ) -> int:
        with schema_context(self.slug):
            job, _ = services.job_create(
                actor="test",
                dataset=self.dataset,
                config={
                    "target": "target",
                    "algorithm": "gradient_boosting",
                    "hyperparameters": {"n_estimators": estimators},
                    "model_name": name,
                },
                lease_seconds=LEASE,
                max_attempts=max_attempts,
            )
        return job.pk

    def __exit__(self, *exc: object) -> None:
        queue_cleanup(self.slug)
        tenant_delete(slug=self.slug)
        shutil.rmtree(Path(settings.MEDIA_ROOT) / self.slug, ignore_errors=True)


def _wait_for_kill_point(  # type: ignore[no-untyped-def]
    slug: str, target: float, hits: dict, watch, rng: random.Random
) -> None:
    """Return at a random point of a training attempt of this cluster: when the first
    job it is training (past the claim) reaches `target` percent of progress; a
    target over 100 means after that job finished (plus up to a second), i.e. in
    the next job or between two. Measured in progress, not in seconds, so the kill
    points do not depend on how loaded the machine is."""
    watched: tuple[int, int] | None = None
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        jobs = watch(slug)
        if watched is None:
            watched = next(
                (
                    (j["pk"], j["attempts"])
                    for j in jobs.values()
                    if j["status"] == "running"
                    and j["stage"] != "starting"
                    and (j["pk"], j["attempts"]) not in hits
                ),
                None,
            )
        else:
            job = jobs[watched[0]]
            if job["status"] != "running" or job["attempts"] != watched[1]:
                if target > 100:
                    time.sleep(rng.uniform(0.0, 1.0))
                return
            if job["progress"] >= target:
                return
        time.sleep(0.2)


def _reap(slug: str) -> None:
    with schema_context(slug):
        services.jobs_reap()


def _jobs(slug: str) -> dict[int, dict[str, Any]]:
    with schema_context(slug):
        return {
            row["pk"]: row
            for row in Job.objects.values(
                "pk",
                "status",
                "attempts",
                "progress",
                "stage",
                "error_code",
                "error_message",
                "result_version_id",
            )
        }


def _versions_per_job(slug: str) -> dict[int, int]:
    with schema_context(slug):
        rows = (
            ModelVersion.objects.values("lineage__job_id")
            .annotate(n=Count("pk"))
            .values_list("lineage__job_id", "n")
        )
        return {int(job_id): n for job_id, n in rows}


def test_the_test_database_is_set_up(db):
    """Makes pytest-django set up the test database the workers below connect to (a
    test asking only for `django_db_setup` does not); run the module as a whole."""
    from django.db import connection

    assert connection.settings_dict["NAME"] == settings.DATABASES["default"]["NAME"]


@pytest.fixture
def _chaos_settings(settings, tmp_path):  # type: ignore[no-untyped-def]
    settings.MEDIA_ROOT = str(tmp_path / "media")
    settings.JOB_QUEUED_STALE_SECONDS = STALE


def test_20_kills_of_the_worker_leave_no_job_stuck_and_no_duplicate_version(
    django_db_setup, django_db_blocker, _chaos_settings
):
    seed = int(os.environ.get("CHAOS_SEED") or random.SystemRandom().randrange(10**6))
    print(f"\nCHAOS_SEED={seed}")
    rng = random.Random(seed)
    started = time.monotonic()
    hits: dict[tuple[int, int], float] = {}  # (job, attempt) running at a kill -> when
    released: dict[tuple[int, int], float] = {}  # -> seconds until it was let go
    phases: Counter[str] = Counter()
    targets: list[float] = []
    proc = None

    def watch(slug: str) -> dict[int, dict[str, Any]]:
        """Reap, then note when each job hit by a kill left its dead attempt."""
        _reap(slug)
        jobs = _jobs(slug)
        now = time.monotonic()
        for (job_id, attempt), killed_at in hits.items():
            job = jobs[job_id]
            if (job_id, attempt) not in released and (
                job["status"] != "running" or job["attempts"] != attempt
            ):
                released[(job_id, attempt)] = now - killed_at
        return jobs

    with django_db_blocker.unblock(), Tenant("chaos") as tenant:
        try:
            ids: list[int] = []
            for _ in range(ROUNDS):
                # Work for this round: at least ACTIVE jobs queued or running.
                active = sum(
                    j["status"] not in Job.TERMINAL for j in _jobs(tenant.slug).values()
                )
                for _ in range(ACTIVE - active):
                    ids.append(
                        tenant.job(
                            f"chaos-{len(ids)}",
                            estimators=rng.choice((100, 200, 300)),
                            max_attempts=CHAOS_ATTEMPTS,
                        )
                    )
                proc = start_worker({**WORKER_ENV, "Q_WORKERS": "2"})
                target = rng.uniform(5.0, 130.0)
                targets.append(target)
                _wait_for_kill_point(tenant.slug, target, hits, watch, rng)
                running = [
                    j for j in _jobs(tenant.slug).values() if j["status"] == "running"
                ]
                kill_worker(proc)
                proc = None
                killed_at = time.monotonic()
                for job in running:
                    key = (job["pk"], job["attempts"])
                    if key not in hits:  # not an attempt killed earlier, unreaped yet
                        hits[key] = killed_at
                        phases[job["stage"].split(":")[0]] += 1
            last_kill = time.monotonic()
            # No worker now: within lease + 60 s every job hit by a kill is requeued
            # or failed, none is left running.
            while time.monotonic() - last_kill < LEASE + 60:
                jobs = watch(tenant.slug)
                if not any(j["status"] == "running" for j in jobs.values()):
                    break
                time.sleep(0.5)
            cleared_after = time.monotonic() - last_kill
            still_running = [
                (j["pk"], j["attempts"], j["stage"])
                for j in _jobs(tenant.slug).values()
                if j["status"] == "running"
            ]
            assert not still_running, still_running
            assert cleared_after <= LEASE + 60
            # A last, undisturbed worker finishes what is left.
            proc = start_worker({**WORKER_ENV, "Q_WORKERS": "2"})
            deadline = time.monotonic() + 180
            while time.monotonic() < deadline:
                jobs = watch(tenant.slug)
                if all(j["status"] in Job.TERMINAL for j in jobs.values()):
                    break
                time.sleep(1)
            jobs = _jobs(tenant.slug)
            versions = _versions_per_job(tenant.slug)
        finally:
            if proc is not None:
                kill_worker(proc)

    elapsed = time.monotonic() - started
    outcomes = Counter(j["status"] for j in jobs.values())
    attempts = Counter(j["attempts"] for j in jobs.values())
    slowest = max(released.values(), default=0.0)
    print(
        f"rounds={ROUNDS} kills={ROUNDS} jobs={len(ids)} "
        f"attempts-killed-mid-run={len(hits)} "
        f"phases={dict(phases)} released={len(released)} "
        f"slowest-release={slowest:.1f}s cleared-after-last-kill={cleared_after:.1f}s "
        f"outcomes={dict(outcomes)} attempts={dict(sorted(attempts.items()))} "
        f"targets={sorted(round(t) for t in targets)} elapsed={elapsed:.0f}s"
    )
    assert set(jobs) == set(ids)
    for job in jobs.values():
        assert job["status"] in ("succeeded", "failed"), job
        if job["status"] == "succeeded":
            assert versions.get(job["pk"]) == 1, (job, versions)
            assert job["result_version_id"] is not None
        else:
            assert job["error_code"] and job["error_message"], job
            assert versions.get(job["pk"], 0) == 0, (job, versions)
    assert all(n == 1 for n in versions.values()), versions  # never two versions
    assert hits, "no kill landed on a running job"
    # Every attempt a kill left behind was let go (requeued or failed) within the
    # lease plus a minute.
    assert set(released) == set(hits), set(hits) - set(released)
    assert slowest <= LEASE + 60
    assert outcomes["succeeded"] > 0


def test_a_task_that_always_kills_its_worker_fails_after_3_attempts_while_others_run(
    django_db_setup, django_db_blocker, _chaos_settings
):
    started = time.monotonic()
    proc = None
    with django_db_blocker.unblock(), Tenant("poison") as tenant:
        try:
            poison = tenant.job(f"{POISON_PREFIX}1", estimators=100)
            others = [tenant.job(f"healthy-{i}", estimators=300) for i in range(6)]
            proc = start_worker({**WORKER_ENV, "Q_WORKERS": "2"})
            deadline = time.monotonic() + 240
            finished_while_poison_active: set[int] = set()
            while time.monotonic() < deadline:
                _reap(tenant.slug)
                jobs = _jobs(tenant.slug)
                if jobs[poison]["status"] not in Job.TERMINAL:
                    finished_while_poison_active |= {
                        pk for pk in others if jobs[pk]["status"] == "succeeded"
                    }
                if all(j["status"] in Job.TERMINAL for j in jobs.values()):
                    break
                time.sleep(1)
            with schema_context(tenant.slug):
                events = list(
                    Job.objects.get(pk=poison).events.values_list("message", flat=True)
                )
            versions = _versions_per_job(tenant.slug)
        finally:
            if proc is not None:
                kill_worker(proc)
    elapsed = time.monotonic() - started
    bad = jobs[poison]
    print(
        f"\npoison: {bad['status']} after {bad['attempts']} attempts "
        f"({bad['error_code']}: {bad['error_message']}); others: "
        f"{Counter(jobs[pk]['status'] for pk in others)}, "
        f"{len(finished_while_poison_active)} finished while the poison job was "
        f"still active; elapsed={elapsed:.0f}s"
    )
    assert bad["status"] == "failed", (bad, events)
    assert bad["attempts"] <= 3
    assert bad["error_code"] == "lease_expired"
    assert "no attempts left" in bad["error_message"]
    assert versions.get(poison, 0) == 0
    for pk in others:
        assert jobs[pk]["status"] == "succeeded", jobs[pk]
        assert versions.get(pk) == 1
    # The other jobs flowed while the poison job was still being retried.
    assert finished_while_poison_active
