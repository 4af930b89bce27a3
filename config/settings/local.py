"""Development: `make run`. Secrets come from the generated, git-ignored `.env`."""

from django.core.exceptions import ImproperlyConfigured

from .base import *  # noqa: F403
from .base import SECRET_KEY, env

DEBUG = env.bool("DEBUG", default=True)
SITE_PORT = env.int("SITE_PORT", default=8000)
if not SECRET_KEY:
    raise ImproperlyConfigured("SECRET_KEY is unset: run `make .env` (make run does).")
WHITENOISE_USE_FINDERS = True
# Local model servers (Ollama, vLLM) usually listen on loopback during development.
SSRF_ALLOW_LIST = env.list("SSRF_ALLOW_LIST", default=["127.0.0.1/32", "::1/128"])
