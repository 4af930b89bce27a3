"""Secrets at rest: one MultiFernet key ring (FIELD_ENCRYPTION_KEYS, newest first).

Every decryption goes through `decrypt()`; a token no key can open raises
`DecryptionError` instead of ever handing back ciphertext.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import models


class DecryptionError(Exception):
    """The stored value cannot be opened with any key in the ring."""


@lru_cache(maxsize=4)
def _ring(keys: tuple[str, ...]) -> MultiFernet:
    if not keys:
        raise ImproperlyConfigured("FIELD_ENCRYPTION_KEYS is empty.")
    try:
        return MultiFernet([Fernet(k.encode()) for k in keys])
    except (ValueError, TypeError) as exc:
        raise ImproperlyConfigured(
            "FIELD_ENCRYPTION_KEYS holds a key that is not a Fernet key."
        ) from exc


def key_ring() -> MultiFernet:
    return _ring(tuple(settings.FIELD_ENCRYPTION_KEYS))


def encrypt(plaintext: str) -> str:
    return key_ring().encrypt(plaintext.encode()).decode()


def decrypt(token: str) -> str:
    try:
        return key_ring().decrypt(token.encode()).decode()
    except InvalidToken as exc:
        raise DecryptionError("stored secret cannot be decrypted with any key") from exc


def rotate(token: str) -> str:
    """Re-encrypt under the newest key. Safe to repeat: it decrypts first, so a
    rotated token is never encrypted twice."""
    try:
        return key_ring().rotate(token.encode()).decode()
    except InvalidToken as exc:
        raise DecryptionError("stored secret cannot be decrypted with any key") from exc


def is_encrypted_with_primary(token: str) -> bool:
    primary = Fernet(settings.FIELD_ENCRYPTION_KEYS[0].encode())
    try:
        primary.decrypt(token.encode())
    except InvalidToken:
        return False
    return True


def mask(secret: str | None) -> str:
    """How a stored secret is shown: the last four characters only."""
    if not secret:
        return ""
    return "••••" + secret[-4:] if len(secret) > 8 else "••••"


class EncryptedTextField(models.TextField):
    """Stores a Fernet token; Python code sees the plaintext. Never indexed,
    never searchable; admin and API must treat it as write-only."""

    def get_prep_value(self, value: Any) -> Any:
        value = super().get_prep_value(value)
        if value is None or value == "":
            return value
        return encrypt(str(value))

    def from_db_value(self, value: Any, expression: Any, connection: Any) -> Any:
        if value is None or value == "":
            return value
        return decrypt(value)
