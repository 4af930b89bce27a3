"""`make run`: database, migrations, demo tenant, then web + worker until Ctrl-C."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand

from apps.core import embedded_db


class Command(BaseCommand):
    help = "Development: migrate, seed the demo tenant, serve web and a worker."

    def add_arguments(self, parser):  # type: ignore[no-untyped-def]
        parser.add_argument(
            "--addr", default=os.environ.get("RUN_ADDR", "127.0.0.1:8000")
        )

    def handle(self, *args, **options):  # type: ignore[no-untyped-def]
        embedded = not os.environ.get("DATABASE_URL")
        if embedded:
            embedded_db.start()
        call_command("migrate_schemas", interactive=False, verbosity=0)
        call_command("tenant_template", verbosity=0)
        call_command("seed_demo")
        manage = [sys.executable, str(settings.BASE_DIR / "manage.py")]
        children = [
            subprocess.Popen([*manage, "qcluster"]),  # noqa: S603
            subprocess.Popen([*manage, "runserver", options["addr"], "--noreload"]),  # noqa: S603
        ]
        port = options["addr"].rsplit(":", 1)[-1]
        self.stdout.write(
            self.style.SUCCESS(
                f"\nServing on http://demo.localhost:{port}/ with a background worker."
                " Ctrl-C stops web, worker and database.\n"
            )
        )
        stopping = False

        def stop(signum: int, frame: object) -> None:
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        while not stopping and all(c.poll() is None for c in children):
            time.sleep(0.3)
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGINT)
        deadline = time.monotonic() + 8
        for child in children:
            try:
                child.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.kill()
        if embedded:
            embedded_db.stop()
        self.stdout.write("Stopped web, worker and database.")
