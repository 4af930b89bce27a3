import signal
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand

from apps.inference.spool import Spool, backlog


class Command(BaseCommand):
    help = (
        "Replay the inference spool files of processes that are gone into their "
        "tables (the web processes do it themselves once they log through the spool; "
        "this does it now, e.g. after a host restart). Files of live processes are "
        "left to them. With --follow: be the server's drain process, which copies "
        "the files of web workers that only append (gunicorn's master starts it when "
        "INFERENCE_SPOOL_HOST_DRAIN is on) until SIGTERM."
    )

    def add_arguments(self, parser):  # type: ignore[no-untyped-def]
        parser.add_argument(
            "--dir",
            default=settings.INFERENCE_SPOOL_DIR,
            help="the spool directory (default: INFERENCE_SPOOL_DIR)",
        )
        parser.add_argument(
            "--follow",
            action="store_true",
            help="keep copying the web workers' files as they grow, until SIGTERM",
        )
        parser.add_argument(
            "--parent",
            type=int,
            default=None,
            help="with --follow: stop when this process (the server) is gone",
        )

    def handle(self, *args, **options):  # type: ignore[no-untyped-def]
        directory = Path(options["dir"])
        spool = Spool(directory)
        if options["follow"]:
            self._follow(spool, options["parent"])
            return
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

    def _follow(self, spool: Spool, parent: int | None) -> None:
        def stop(signum: int, frame: object) -> None:
            # Only the flag: setting an Event here could deadlock on its own lock,
            # held by this thread when the signal came. Every wait is short.
            spool.stopping = True

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        try:
            spool.serve_host(parent=parent)
        finally:
            spool.stop()
