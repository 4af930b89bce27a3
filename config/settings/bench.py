"""Benchmarks (`make bench`): production settings served over plain HTTP on loopback.

Everything the production module does stays (DEBUG off, JSON logging, persistent
connections, the manifest static storage); only what loopback HTTP cannot satisfy is
relaxed. SECRET_KEY and FIELD_ENCRYPTION_KEYS still come from the environment: the
bench runner (bench/harness.py) generates them for the bench database.
"""

import os

# production.py insists on ALLOWED_HOSTS from the environment; loopback takes any host.
os.environ.setdefault("ALLOWED_HOSTS", "*")

from .production import *  # noqa: F403
from .production import env

ALLOWED_HOSTS = ["*"]
SECURE_SSL_REDIRECT = False
SESSION_COOKIE_SECURE = False
CSRF_COOKIE_SECURE = False
SECURE_HSTS_SECONDS = 0
# The baseline view of item 1 lives next to the tenant routes (config/urls_bench.py).
ROOT_URLCONF = "config.urls_bench"
# The fake OpenAI provider of item 9 listens on 127.0.0.1.
SSRF_ALLOW_LIST = env.list("SSRF_ALLOW_LIST", default=["127.0.0.1/32"])
