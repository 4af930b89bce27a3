"""Settings for a worker under the job chaos tests: the test settings plus one
test-only app. Its ready() wraps the trainer so that a job whose model name starts
with POISON_PREFIX kills its own worker process (SIGKILL) right after the claim, on
every attempt: a task that always takes its worker down."""

from __future__ import annotations

import importlib
import os
import signal
from typing import Any

from django.apps import AppConfig

from config.settings.test import *  # noqa: F403
from config.settings.test import INSTALLED_APPS

POISON_PREFIX = "poison-"
WARM_MODULES = (
    "sklearn.ensemble",
    "sklearn.linear_model",
    "sklearn.model_selection",
    "skops.io",
    "apps.inference.explain",
)


class PoisonConfig(AppConfig):
    name = "tests.reliability"
    label = "chaos_poison"

    def ready(self) -> None:
        # The training stack is imported up front, so that the workers the cluster
        # forks start warm and a kill lands in training rather than in imports.
        for module in WARM_MODULES:
            importlib.import_module(module)
        from apps.jobs.trainers import sklearn as trainer

        original = trainer.run

        def run(job: Any, report: Any) -> Any:
            if str(job.config.get("model_name") or "").startswith(POISON_PREFIX):
                os.kill(os.getpid(), signal.SIGKILL)
            return original(job, report)

        trainer.run = run


INSTALLED_APPS = [*INSTALLED_APPS, "tests.reliability.chaos_worker.PoisonConfig"]
