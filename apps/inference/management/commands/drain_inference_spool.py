from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand

from apps.inference.spool import SUFFIX, Spool


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
        finally:
            spool.stop()
        live = sorted(path.name for path in directory.glob(f"*{SUFFIX}"))
        rejected = sorted((directory / "rejected").glob(f"*{SUFFIX}"))
        self.stdout.write(
            f"replayed {rows} row(s); {len(live)} file(s) of live processes"
        )
        for path in rejected:
            lines = path.read_text(errors="replace").splitlines()
            refused = sum(1 for line in lines if line.startswith("# "))
            self.stderr.write(f"{refused} refused row(s) kept in {path}")
