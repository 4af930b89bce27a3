"""The official OpenAI SDK, pointed at /openai/v1, gets answers routed to group members
backed by (fake, local) providers; every answer is a row in the group's table."""

from __future__ import annotations

import json

import httpx2
import openai
import pytest
from django.db import connection
from django_tenants.utils import schema_context

from tests.groups.conftest import llm_group_create, serve_chat


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
        return llm_group_create(
            "support-bot",
            [
                (httpserver.url_for("/a/v1"), "champion", 50),
                (httpserver.url_for("/b/v1"), "challenger", 50),
            ],
        )


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


def test_the_serving_path_trusts_its_copy_of_the_provider_for_a_moment(
    llm_group, tenant_a, make_key, sdk, settings
):
    """At most one provider read per GROUP_ROUTE_TRUST_SECONDS: no second read of the
    breaker, no reset update after a success when there were no failures; a breaker
    opened elsewhere refuses once the copy is older than that."""
    from datetime import timedelta

    from django.test.utils import CaptureQueriesContext
    from django.utils import timezone

    from apps.providers.models import ProviderConfig

    settings.GROUP_ROUTE_TRUST_SECONDS = 60
    _, key = make_key(tenant_a, scope="predict")
    client = sdk(key)

    def ask():  # type: ignore[no-untyped-def]
        return client.chat.completions.create(
            model="support-bot",
            messages=[{"role": "user", "content": "hi"}],
            user="same-member",  # sticky: one provider
        )

    def provider_queries() -> list[str]:
        with CaptureQueriesContext(connection) as queries:
            assert ask().choices[0].message.content.startswith("from")
        return [q["sql"] for q in queries if "providers_providerconfig" in q["sql"]]

    first = provider_queries()
    assert len(first) == 1 and first[0].lstrip().startswith("SELECT"), first
    assert provider_queries() == []
    with schema_context("alpha"):
        # As another process would: no signal reaches this one.
        ProviderConfig.objects.update(
            circuit_open_until=timezone.now() + timedelta(minutes=5)
        )
    assert ask().choices[0].message.content.startswith("from")  # the copy, 60 s
    settings.GROUP_ROUTE_TRUST_SECONDS = 0
    with pytest.raises(openai.APIStatusError) as refused:
        ask()
    assert refused.value.status_code == 503


def test_a_breaker_this_process_trips_refuses_at_once(
    tenant_a, httpserver, make_key, sdk, settings
):
    """The serving path's copy of the provider is dropped when its own calls open the
    breaker; the usage counter of each call is committed with its log row."""
    from apps.providers.models import ProviderConfig, ProviderUsage

    settings.GROUP_ROUTE_TRUST_SECONDS = 60
    settings.PROVIDER_BREAKER_THRESHOLD = 2
    httpserver.expect_request("/down/v1/chat/completions").respond_with_json(
        {"error": {"message": "overloaded", "type": "server_error"}}, status=503
    )
    with schema_context("alpha"):
        group = llm_group_create(
            "down-bot",
            [(httpserver.url_for("/down/v1"), "champion", 100)],
            max_retries=0,
        )
        provider = ProviderConfig.objects.get(name="down-bot-0")
    _, key = make_key(tenant_a, scope="predict")
    client = sdk(key)
    for _ in range(3):
        with pytest.raises(openai.APIStatusError) as refused:
            client.chat.completions.create(
                model="down-bot", messages=[{"role": "user", "content": "hi"}]
            )
    assert refused.value.status_code == 503
    assert "circuit open" in refused.value.message
    assert len(httpserver.log) == 2  # the third call never reached the provider
    with schema_context("alpha"):
        usage = ProviderUsage.objects.get(provider=provider)
        assert (usage.requests, usage.errors) == (2, 2)
        statuses = [row[3] for row in _rows(group.pk)]
    assert statuses == ["error", "error", "error"]


@pytest.mark.parametrize("field", ["presence_penalty", "frequency_penalty"])
@pytest.mark.parametrize("number", ["1e400", "-1e400", "2.5"])
def test_a_penalty_outside_openais_range_is_a_400_naming_it(
    llm_group, tenant_a, make_key, api_client, httpserver, field, number
):
    """-2 to 2, as OpenAI's API says; a number beyond a float's range (infinity once
    parsed) is refused with it, never sent on as JSON's null."""
    _, key = make_key(tenant_a, scope="predict")
    client = api_client(tenant_a, key=key)
    before = len(httpserver.log)

    response = client.post(
        "/openai/v1/chat/completions",
        '{"model": "support-bot", "messages": [{"role": "user", "content": "hi"}], '
        f'"{field}": {number}}}',
        content_type="application/json",
    )

    assert response.status_code == 400, response.content
    assert field in response.content.decode()
    assert len(httpserver.log) == before  # no provider was called
