"""rotate_encryption_keys: every secret ends under the newest key; re-runs are safe."""

import pytest
from cryptography.fernet import Fernet
from django.core.management import call_command
from django.db import connection
from django.test import override_settings
from django_tenants.utils import schema_context

from apps.core import crypto
from apps.core.crypto import DecryptionError
from apps.providers.models import ProviderConfig
from apps.providers.services import provider_create

OLD = Fernet.generate_key().decode()
NEW = Fernet.generate_key().decode()


def _raw_tokens() -> dict[str, str]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT name, api_key FROM providers_providerconfig ORDER BY name"
        )
        return dict(cursor.fetchall())


def _make_providers(count: int) -> None:
    for i in range(count):
        provider_create(
            actor="test",
            name=f"p{i}",
            kind="custom_http",
            base_url="http://127.0.0.1:9/predict",
            api_key=f"sk-rotate-me-{i:04d}",
        )


def test_rotation_is_resumable_and_leaves_every_secret_under_the_newest_key(
    tenant_a, capsys
):
    with override_settings(FIELD_ENCRYPTION_KEYS=[OLD]), schema_context("alpha"):
        _make_providers(5)
        before = _raw_tokens()

    with override_settings(FIELD_ENCRYPTION_KEYS=[NEW, OLD]):
        call_command("rotate_encryption_keys", "--max-rows", "2", "--batch-size", "2")
        assert "Stopped at --max-rows" in capsys.readouterr().out
        with schema_context("alpha"):
            assert (
                sum(crypto.is_encrypted_with_primary(t) for t in _raw_tokens().values())
                == 2
            )

        call_command("rotate_encryption_keys", "--batch-size", "2")
        assert (
            "alpha.providers_providerconfig.api_key: 3 rotated, 2 already current"
            in (capsys.readouterr().out)
        )
        call_command("rotate_encryption_keys")
        assert "Done: rotated 0, 5 already current." in capsys.readouterr().out

    with override_settings(FIELD_ENCRYPTION_KEYS=[NEW]), schema_context("alpha"):
        after = _raw_tokens()
        assert all(after[name] != before[name] for name in before)
        assert sorted(p.api_key for p in ProviderConfig.objects.all()) == [
            f"sk-rotate-me-{i:04d}" for i in range(5)
        ]


def test_rotation_stops_loudly_on_a_secret_no_key_can_open(tenant_a):
    with override_settings(FIELD_ENCRYPTION_KEYS=[OLD]), schema_context("alpha"):
        _make_providers(1)
    with (
        override_settings(FIELD_ENCRYPTION_KEYS=[NEW]),
        pytest.raises(DecryptionError, match="cannot be decrypted"),
    ):
        call_command("rotate_encryption_keys")


def test_dry_run_changes_nothing(tenant_a, capsys):
    with override_settings(FIELD_ENCRYPTION_KEYS=[OLD]), schema_context("alpha"):
        _make_providers(2)
        before = _raw_tokens()
    with override_settings(FIELD_ENCRYPTION_KEYS=[NEW, OLD]):
        call_command("rotate_encryption_keys", "--dry-run")
    assert "Done: would rotate 2" in capsys.readouterr().out
    with schema_context("alpha"):
        assert _raw_tokens() == before
