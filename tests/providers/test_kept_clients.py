"""Provider clients are kept per configuration and process (apps.providers.http)."""

from __future__ import annotations

from apps.providers import http


def test_a_client_is_built_once_and_the_least_recently_used_goes_first(monkeypatch):
    monkeypatch.setattr(http, "_kept", {})
    monkeypatch.setattr(http, "CLIENT_CACHE_SIZE", 2)
    built: list[str] = []

    def kept(name: str) -> str:
        return http.kept_client((name,), lambda: built.append(name) or name)

    assert [kept("a"), kept("b"), kept("a")] == ["a", "b", "a"]
    kept("c")  # b, used longest ago, goes
    kept("a")
    kept("b")

    assert built == ["a", "b", "c", "b"]


def test_the_key_hashes_every_setting_and_holds_the_allow_list(settings):
    from apps.providers.connectors.base import ProviderSettings

    settings.SSRF_ALLOW_LIST = ["127.0.0.1"]
    config = ProviderSettings(
        kind="custom_http", base_url="http://x", api_key="sk-secret-0123"
    )
    key = http.client_key(config)

    assert "sk-secret" not in repr(key)
    assert key == http.client_key(
        ProviderSettings(
            kind="custom_http", base_url="http://x", api_key="sk-secret-0123"
        )
    )
    assert key != http.client_key(
        ProviderSettings(
            kind="custom_http", base_url="http://x", api_key="sk-secret-0124"
        )
    )
    assert key != http.client_key(
        ProviderSettings(
            kind="custom_http",
            base_url="http://x",
            api_key="sk-secret-0123",
            options={"headers": {"X-Team": "risk"}},
        )
    )
    settings.SSRF_ALLOW_LIST = ["127.0.0.1", "10.0.0.1"]
    assert key != http.client_key(config)
