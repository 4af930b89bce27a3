"""Notification tests: a receiving webhook server on 127.0.0.1 (the test SSRF
allow-list admits only that), queued tasks run in-process, pages and API wired
through a test urlconf until config/urls_tenants.py includes them."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.utils.module_loading import import_string

BELL = "apps.notifications.context_processors.bell"


@pytest.fixture(autouse=True)
def _wired(settings: Any, tmp_path: Any) -> None:
    settings.MEDIA_ROOT = str(tmp_path / "media")
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    templates = copy.deepcopy(settings.TEMPLATES)
    processors = templates[0]["OPTIONS"]["context_processors"]
    if BELL not in processors:
        processors.append(BELL)
    settings.TEMPLATES = templates


def run_notification_tasks() -> list[Any]:
    """Run (and remove) the queued notification tasks, oldest first, as a worker
    would: through apps.core.tasks.run_in_tenant with the recorded schema."""
    from django_q.models import OrmQ

    results = []
    for queued in OrmQ.objects.order_by("id"):
        task = queued.task
        args = task.get("args") or ()
        if len(args) < 2 or not str(args[1]).startswith("apps.notifications."):
            continue
        queued.delete()
        results.append(import_string(task["func"])(*args, **task.get("kwargs", {})))
    return results


@pytest.fixture
def drain() -> Iterator[Callable[[], list[Any]]]:
    yield run_notification_tasks
    from django_q.models import OrmQ, Schedule

    for queued in OrmQ.objects.all():
        args = queued.task.get("args") or ()
        if len(args) > 1 and str(args[1]).startswith("apps.notifications."):
            queued.delete()
    Schedule.objects.filter(name__contains=":webhook:").delete()
