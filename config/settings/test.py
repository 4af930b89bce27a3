"""pytest: real PostgreSQL (embedded unless DATABASE_URL), fixed non-secret keys."""

from .base import *  # noqa: F403
from .base import DATABASES, LOGGING, env

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
