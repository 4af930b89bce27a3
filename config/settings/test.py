"""pytest: real PostgreSQL (embedded unless DATABASE_URL), fixed non-secret keys."""

from pathlib import Path

from .base import *  # noqa: F403
from .base import BASE_DIR, DATABASES, LOGGING, env

DEBUG = False
SECRET_KEY = "test-only-secret-key-not-used-anywhere-else-0123456789"
# Two keys so that rotation is exercised: the first encrypts, both decrypt.
FIELD_ENCRYPTION_KEYS = [
    "nJyioc3n971pUQdmmEUMfcLzD98wiBfG5oxK9XhD1EY=",
    "dtSVSoeMJFPJ5myAJMBJbkt3uG4dvvTUbOp6f9nb6YE=",
]
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
ALLOWED_HOSTS = ["*"]
LOGGING["root"]["level"] = "WARNING"  # type: ignore[index]
DATABASES["default"]["CONN_MAX_AGE"] = 0
WHITENOISE_USE_FINDERS = True
# The local fake provider servers of the tests listen on 127.0.0.1 only.
SSRF_ALLOW_LIST = ["127.0.0.1/32"]
PROVIDER_BACKOFF_BASE = 0.01
PROVIDER_BACKOFF_MAX = 0.05
DATABASES["default"]["TEST"] = {"NAME": env("TEST_DB_NAME", default="test_modelhub")}
# The "replica" alias is the test database itself (a mirror: nothing is created, a
# second connection is opened). Analytics reads use it only in tests that set
# ANALYTICS_DB_ALIAS = "replica"; everywhere else they read the primary.
DATABASES["replica"] = {
    **DATABASES["default"],
    "OPTIONS": dict(DATABASES["default"].get("OPTIONS", {})),
    "TEST": {"MIRROR": "default"},
}
ANALYTICS_DB_ALIAS = "default"

# Files of one test run (its database name, plus the xdist worker) stay apart from any
# other run's: tenants of different test databases share slugs and primary keys.
_RUN = env("TEST_DB_NAME", default="test_modelhub") + (
    "-" + env("PYTEST_XDIST_WORKER", default="main")
)
MEDIA_ROOT = Path(
    env("MEDIA_ROOT", default=str(BASE_DIR / "var/test" / _RUN / "media"))
)
ARCHIVE_ROOT = Path(
    env("ARCHIVE_ROOT", default=str(BASE_DIR / "var/test" / _RUN / "archive"))
)
