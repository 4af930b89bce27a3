"""Test settings with the product's persistent database connections (CONN_MAX_AGE
60 s, health-checked before reuse), for a server that lives through a database
restart."""

from config.settings.test import *  # noqa: F403
from config.settings.test import DATABASES

DATABASES["default"]["CONN_MAX_AGE"] = 60
