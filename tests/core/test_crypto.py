"""The key ring: round trip, rotation to the newest key, loud failure."""

import pytest
from cryptography.fernet import Fernet
from django.db import connection
from django.test import override_settings

from apps.core import crypto
from apps.core.crypto import DecryptionError, EncryptedTextField

OLD = Fernet.generate_key().decode()
NEW = Fernet.generate_key().decode()


def test_round_trip_and_ciphertext_does_not_contain_plaintext():
    token = crypto.encrypt("sk-live-canary-1234")

    assert "sk-live-canary-1234" not in token
    assert crypto.decrypt(token) == "sk-live-canary-1234"


def test_rotation_moves_a_secret_to_the_newest_key_and_is_repeatable():
    with override_settings(FIELD_ENCRYPTION_KEYS=[OLD]):
        token = crypto.encrypt("s3cret")
    with override_settings(FIELD_ENCRYPTION_KEYS=[NEW, OLD]):
        assert crypto.decrypt(token) == "s3cret"
        assert not crypto.is_encrypted_with_primary(token)
        rotated = crypto.rotate(token)
        twice = crypto.rotate(rotated)
        assert crypto.is_encrypted_with_primary(rotated)
        assert crypto.decrypt(twice) == "s3cret"  # never encrypted twice
    with override_settings(FIELD_ENCRYPTION_KEYS=[NEW]):
        assert crypto.decrypt(rotated) == "s3cret"  # old key can now be retired
        with pytest.raises(DecryptionError, match="cannot be decrypted"):
            crypto.decrypt(token)


def test_garbage_raises_instead_of_returning_ciphertext():
    with pytest.raises(DecryptionError, match="cannot be decrypted with any key"):
        crypto.decrypt("not-a-token")


def test_encrypted_field_stores_only_ciphertext():
    field = EncryptedTextField()
    stored = field.get_prep_value("hunter2-abcd")

    assert stored != "hunter2-abcd" and "hunter2" not in stored
    assert field.from_db_value(stored, None, connection) == "hunter2-abcd"
    assert field.get_prep_value("") == "" and field.get_prep_value(None) is None


@pytest.mark.parametrize(
    ("secret", "shown"),
    [("sk-1234567890abcd", "••••abcd"), ("short", "••••"), ("", "")],
)
def test_mask_shows_only_the_last_four(secret, shown):
    assert crypto.mask(secret) == shown


def test_a_bad_key_ring_is_a_configuration_error():
    from django.core.exceptions import ImproperlyConfigured

    with (
        override_settings(FIELD_ENCRYPTION_KEYS=["not-a-key"]),
        pytest.raises(ImproperlyConfigured, match="not a Fernet key"),
    ):
        crypto.encrypt("x")
