"""The official OpenAI SDK, pointed at /openai/v1, gets answers routed to group members
backed by (fake, local) providers; every answer is a row in the group's table."""

from __future__ import annotations

import json

import httpx2
import openai
import pytest
from django.db import connection
from django_tenants.utils import schema_context

from apps.groups.services import group_create, group_set_status, members_set
from apps.providers.services import provider_create
from apps.registry.services import model_import
from tests.groups.conftest import serve_chat


@pytest.fixture
def sdk(in_process_http):
    """sdk(key) -> the real OpenAI SDK whose HTTP goes straight into our WSGI app."""

    def make(key: str, host: str = "alpha.test") -> openai.OpenAI:
        return openai.OpenAI(
            api_key=key,
            base_url=f"http://{host}/openai/v1",
            max_retries=0,
            http_client=httpx2.Client(transport=in_process_http),
        )

    return make


@pytest.fixture
def llm_group(tenant_a, httpserver):
    serve_chat(httpserver, "/a/v1/chat/completions", "from champion")
    serve_chat(httpserver, "/b/v1/chat/completions", "from challenger")
    with schema_context("alpha"):
        a = provider_create(
            actor="t",
            name="up-a",
            kind="openai",
            base_url=httpserver.url_for("/a/v1"),
            api_key="sk-up-a-123456",
        )
        b = provider_create(
            actor="t",
            name="up-b",
            kind="openai",
            base_url=httpserver.url_for("/b/v1"),
            api_key="sk-up-b-123456",
        )
        va = model_import(provider=a, external_id="gpt-a", actor="t").version_id
        vb = model_import(provider=b, external_id="gpt-b", actor="t").version_id
        group = group_create(
            name="Support bot",
            slug="support-bot",
            actor="t",
            traffic_config={"sticky": True},
        )
        members_set(
            group=group,
            actor="t",
            members=[
                {"version_id": va, "role": "champion", "weight": 50},
                {"version_id": vb, "role": "challenger", "weight": 50},
            ],
        )
        group_set_status(group=group, status="active", actor="t")
    return group


def _rows(group_id: int) -> list[tuple]:
    with schema_context("alpha"), connection.cursor() as cursor:
        cursor.execute(
            f"SELECT request_id::text, role, door, status, routing_key, output "
            f"FROM inference_log_g{group_id} ORDER BY ts"
        )
        return cursor.fetchall()


def test_sdk_chat_completion_is_routed_and_logged(llm_group, tenant_a, make_key, sdk):
    _, key = make_key(tenant_a, scope="predict")
    client = sdk(key)

    listed = [m.id for m in client.models.list()]
    answers = {}
    for user in ("ann", "bob", "cy", "dee", "eve", "fay", "gus", "hal"):
        raw = client.chat.completions.with_raw_response.create(
            model="support-bot", messages=[{"role": "user", "content": "hi"}], user=user
        )
        completion = raw.parse()
        answers[user] = completion.choices[0].message.content
        assert completion.model == "support-bot"
        assert completion.usage.total_tokens == 12
        assert completion.id == f"chatcmpl-{raw.headers['x-modelhub-request-id']}"

    assert listed == ["support-bot"]
    assert set(answers.values()) == {"from champion", "from challenger"}
    rows = _rows(llm_group.pk)
    assert len(rows) == 8
    assert {r[2] for r in rows} == {"openai"} and {r[3] for r in rows} == {"ok"}
    by_user = {r[4]: r for r in rows}
    for user, content in answers.items():
        role = "champion" if content == "from champion" else "challenger"
        assert by_user[user][1] == role
        assert json.loads(by_user[user][5])["output"] == content
    # Sticky: the same user is answered by the same member again.
    again = client.chat.completions.create(
        model="support-bot", messages=[{"role": "user", "content": "hi"}], user="ann"
    )
    assert again.choices[0].message.content == answers["ann"]


def test_unknown_model_and_streaming_are_clear_errors(
    llm_group, tenant_a, make_key, sdk
):
    _, key = make_key(tenant_a, scope="predict")
    client = sdk(key)

    with pytest.raises(openai.NotFoundError, match="does not exist"):
        client.chat.completions.create(
            model="nope", messages=[{"role": "user", "content": "x"}]
        )
    with pytest.raises(openai.BadRequestError, match="Streaming is not supported"):
        client.chat.completions.create(
            model="support-bot",
            stream=True,
            messages=[{"role": "user", "content": "x"}],
        )


def test_openai_door_refuses_a_key_of_another_tenant(
    llm_group, tenant_b, make_key, sdk
):
    _, key = make_key(tenant_b, scope="predict")
    with pytest.raises(openai.AuthenticationError):
        sdk(key).chat.completions.create(
            model="support-bot", messages=[{"role": "user", "content": "x"}]
        )


def test_the_serving_path_uses_the_breaker_state_it_just_read(
    llm_group, tenant_a, make_key, sdk
):
    """One provider read per call: no second read of the breaker, no reset update
    after a success when there were no failures; an open breaker still refuses."""
    from datetime import timedelta

    from django.test.utils import CaptureQueriesContext
    from django.utils import timezone

    from apps.providers.models import ProviderConfig

    _, key = make_key(tenant_a, scope="predict")
    client = sdk(key)

    def ask():  # type: ignore[no-untyped-def]
        return client.chat.completions.create(
            model="support-bot", messages=[{"role": "user", "content": "hi"}]
        )

    with CaptureQueriesContext(connection) as queries:
        assert ask().choices[0].message.content.startswith("from")
    provider_reads = [q for q in queries if "providers_providerconfig" in q["sql"]]
    assert len(provider_reads) == 1, [q["sql"][:80] for q in provider_reads]
    with schema_context("alpha"):
        ProviderConfig.objects.update(
            circuit_open_until=timezone.now() + timedelta(minutes=5)
        )
    with pytest.raises(openai.APIStatusError) as refused:
        ask()
    assert refused.value.status_code == 503
