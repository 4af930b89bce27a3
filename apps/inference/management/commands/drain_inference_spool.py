from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand

from apps.inference.spool import Spool, backlog


class Command(BaseCommand):
    help = (
        "Replay the inference spool files of processes that are gone into their "
        "tables (the web processes do it themselves once they log through the spool; "
        "this does it now, e.g. after a host restart). Files of live processes are "
        "left to them."
    )

    def add_arguments(self, parser):  # type: ignore[no-untyped-def]
        parser.add_argument(
            "--dir",
            default=settings.INFERENCE_SPOOL_DIR,
            help="the spool directory (default: INFERENCE_SPOOL_DIR)",
        )

    def handle(self, *args, **options):  # type: ignore[no-untyped-def]
        directory = Path(options["dir"])
        spool = Spool(directory)
        try:
            rows = spool.adopt()
            rows += spool.retry_held_now()  # held files too, their tables mended or not
        finally:
            spool.stop()
        left = backlog(directory)
        self.stdout.write(
            f"replayed {rows} row(s); "
            f"{left.files - left.held_files} file(s) of live processes"
        )
        if left.held_files:
            self.stderr.write(
                f"{left.held_files} held file(s): rows of tables that still refuse them "
                "(see the log); a web process logging through the spool, or this "
                "command run again once they are mended, retries them"
            )
        if left.refused_rows:
            self.stderr.write(
                f"{left.refused_rows} refused row(s) kept in {directory / 'rejected'}"
            )
