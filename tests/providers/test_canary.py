"""A key saved through the API never shows again: not in responses, pages, admin,
logs, the queue, the audit trail or any plaintext column; the table holds ciphertext."""

from __future__ import annotations

import logging

from django.db import connection
from django_tenants.utils import schema_context

from apps.core.logging import ContextFilter, JsonFormatter

CANARY = "sk-canary-" + "7f3a9c1e5b2d4a60"


def _all_text_in_schema(schema: str) -> str:
    """Every row of every table of a schema, as text (what a dump would show)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT table_name FROM information_schema.tables "
            "WHERE table_schema = %s AND table_type = 'BASE TABLE'",
            [schema],
        )
        tables = [row[0] for row in cursor.fetchall()]
        chunks = []
        for table in tables:
            cursor.execute(f'SELECT t::text FROM "{schema}"."{table}" t')
            chunks.extend(row[0] for row in cursor.fetchall())
    return "\n".join(chunks)


def test_canary_key_never_reappears_anywhere(
    tenant_a, make_user, make_key, api_client, page_client, httpserver, caplog
):
    # The fake provider echoes the key it was sent, as some real providers do.
    httpserver.expect_request("/v1/models").respond_with_json(
        {"error": {"message": f"Incorrect API key provided: {CANARY}"}}, status=401
    )
    admin = make_user(tenant_a, "admin")
    _, raw = make_key(tenant_a)
    api = api_client(tenant_a, key=raw)
    pages = page_client(tenant_a, admin)
    seen: list[str] = []
    statuses: list[int] = []

    with caplog.at_level(logging.DEBUG):
        created = api.post(
            "/api/v1/providers/",
            {
                "name": "canary",
                "kind": "openai",
                "base_url": httpserver.url_for("/v1"),
                "api_key": CANARY,
                "default_model": "gpt-x",
            },
            format="json",
        )
        assert created.status_code == 201, created.content
        pk = created.json()["id"]
        for response in (
            created,
            api.get("/api/v1/providers/"),
            api.get(f"/api/v1/providers/{pk}/"),
            api.patch(
                f"/api/v1/providers/{pk}/", {"default_model": "gpt-y"}, format="json"
            ),
            api.post(f"/api/v1/providers/{pk}/test/"),
            api.get(f"/api/v1/providers/{pk}/models/"),  # 502: the provider said 401
            api.post(
                "/api/v1/providers/bulk/",
                {"ids": [pk], "action": "test"},
                format="json",
            ),
            api.get("/api/v1/audit-events/"),
            pages.get("/settings/providers/"),
            pages.get(f"/settings/providers/{pk}/"),
            pages.post(f"/settings/providers/{pk}/test/"),
            pages.post(f"/settings/providers/{pk}/test/", HTTP_HX_REQUEST="true"),
            pages.get(f"/admin/providers/providerconfig/{pk}/change/"),
            pages.get("/admin/providers/providerconfig/"),
            pages.get("/admin/audit/auditevent/"),
            pages.get("/settings/audit/"),
        ):
            seen.append(response.content.decode())
            statuses.append(response.status_code)

    # 502: the provider refused the key; 302: the page's test button redirects back.
    assert (
        statuses == [201, 200, 200, 200, 200, 502, 200, 200, 200, 200, 302] + [200] * 5
    )

    assert httpserver.log, "the provider was really called"
    assert any(
        CANARY in str(req.headers) for req, _ in httpserver.log
    )  # it was sent...
    assert not [body for body in seen if CANARY in body]  # ...and never shown
    assert "••••abcd" not in "".join(seen)  # the masked form is of the key's last four
    assert any("••••4a60" in body for body in seen)

    formatter = JsonFormatter("%(levelname)s %(name)s %(message)s")
    context = ContextFilter()
    for record in caplog.records:
        context.filter(record)
        assert CANARY not in formatter.format(record)

    with schema_context("public"):
        public_dump = _all_text_in_schema("public")  # includes django-q2's queue tables
    tenant_dump = _all_text_in_schema("alpha")
    assert CANARY not in public_dump
    assert CANARY not in tenant_dump
    with schema_context("alpha"), connection.cursor() as cursor:
        cursor.execute(
            "SELECT api_key FROM providers_providerconfig WHERE id = %s", [pk]
        )
        ciphertext = cursor.fetchone()[0]
    assert ciphertext.startswith("gAAAAA")  # a Fernet token
