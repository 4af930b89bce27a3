"""Per-request (or per-task) context carried into every log line and audit event."""

from __future__ import annotations

import hashlib
import re
import secrets
import uuid
from contextvars import ContextVar
from datetime import datetime

import uuid_utils

request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)
tenant_var: ContextVar[str | None] = ContextVar("tenant", default=None)

# A caller's X-Request-ID is honoured when it looks like an id, not arbitrary text.
_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def new_request_id() -> str:
    """A new UUIDv7: time-ordered, so ids sort by arrival."""
    return str(uuid_utils.uuid7())


# A UUIDv7 spelt as new_request_id spells it and PostgreSQL gives it back: lower-case
# hex with dashes. Python reads other spellings too (upper case, braces, no dashes,
# a urn: prefix), some of which PostgreSQL refuses.
_CANONICAL_UUID7 = re.compile(
    r"[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"
)


def is_canonical_uuid7(value: str | None) -> bool:
    return value is not None and _CANONICAL_UUID7.fullmatch(value) is not None


def request_id_at(moment: datetime, seed: bytes | None = None) -> str:
    """A UUIDv7 carrying the given millisecond (RFC 9562's layout: 48 bits of Unix
    milliseconds, the version, 12 random bits, the variant, 62 random bits). With a
    `seed` the "random" bits are its hash: the same seed gives the same id."""
    millis = round(moment.timestamp() * 1000)
    if seed is None:
        random_a, random_b = secrets.randbits(12), secrets.randbits(62)
    else:
        bits = int.from_bytes(hashlib.blake2b(seed, digest_size=10).digest(), "big")
        random_a, random_b = bits >> 68, bits & ((1 << 62) - 1)
    value = (millis << 80) | (0x7 << 76) | (random_a << 64) | (0b10 << 62) | random_b
    return str(uuid.UUID(int=value))


def accept_request_id(value: str | None) -> str:
    if value and _REQUEST_ID_RE.match(value):
        return value
    return new_request_id()


def current_request_id() -> str | None:
    return request_id_var.get()
