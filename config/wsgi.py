import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.production")
application = get_wsgi_application()

# This process serves web requests: in the spool log mode its rows (and its forked
# workers' rows) go through the spool (apps/inference/spool.py).
from apps.inference.spool import serve_from_this_process  # noqa: E402

serve_from_this_process()
